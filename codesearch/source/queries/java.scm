(class_declaration name: (identifier) @name) @scope.class
(interface_declaration name: (identifier) @name) @scope.interface
(enum_declaration name: (identifier) @name) @scope.enum
(record_declaration name: (identifier) @name) @scope.class
(annotation_type_declaration name: (identifier) @name) @scope.interface

(method_declaration name: (identifier) @name) @unit.method
(constructor_declaration name: (identifier) @name) @unit.constructor
(compact_constructor_declaration name: (identifier) @name) @unit.constructor

; ---------------------------------------------------------------------------
; References, in the convention of tree-sitter's tags.scm files: the referring node as @reference.<kind>
; (call, type, inherit, import) and the name referred to as @name. They hold no @unit. or @scope. capture.

; f(x), obj.method(x), Type.staticMethod(x); new Foo(), new a.Foo<>() are calls of Foo
(method_invocation name: (identifier) @name) @reference.call
(object_creation_expression
  type: [(type_identifier) @name
         (scoped_type_identifier (type_identifier) @name .)
         (generic_type [(type_identifier) @name (scoped_type_identifier (type_identifier) @name .)])]) @reference.call

; The type of a field, variable, parameter, method result, cast or `new`, and a type argument
; (Foo, a.b.Foo and Foo<...>: the last type identifier before the arguments)
(field_declaration
  type: [(type_identifier) @name
         (scoped_type_identifier (type_identifier) @name .)
         (generic_type [(type_identifier) @name (scoped_type_identifier (type_identifier) @name .)])] @reference.type)
(local_variable_declaration
  type: [(type_identifier) @name
         (scoped_type_identifier (type_identifier) @name .)
         (generic_type [(type_identifier) @name (scoped_type_identifier (type_identifier) @name .)])] @reference.type)
(formal_parameter
  type: [(type_identifier) @name
         (scoped_type_identifier (type_identifier) @name .)
         (generic_type [(type_identifier) @name (scoped_type_identifier (type_identifier) @name .)])] @reference.type)
(method_declaration
  type: [(type_identifier) @name
         (scoped_type_identifier (type_identifier) @name .)
         (generic_type [(type_identifier) @name (scoped_type_identifier (type_identifier) @name .)])] @reference.type)
(cast_expression
  type: [(type_identifier) @name
         (scoped_type_identifier (type_identifier) @name .)
         (generic_type [(type_identifier) @name (scoped_type_identifier (type_identifier) @name .)])] @reference.type)
(object_creation_expression
  type: [(type_identifier) @name
         (scoped_type_identifier (type_identifier) @name .)
         (generic_type [(type_identifier) @name (scoped_type_identifier (type_identifier) @name .)])] @reference.type)
(type_arguments
  [(type_identifier) @name
   (scoped_type_identifier (type_identifier) @name .)
   (generic_type [(type_identifier) @name (scoped_type_identifier (type_identifier) @name .)])] @reference.type)

; class A extends B<T> implements I, a.J; interface K extends L
(superclass
  [(type_identifier) @name
   (scoped_type_identifier (type_identifier) @name .)
   (generic_type [(type_identifier) @name (scoped_type_identifier (type_identifier) @name .)])] @reference.inherit)
(super_interfaces
  (type_list
    [(type_identifier) @name
     (scoped_type_identifier (type_identifier) @name .)
     (generic_type [(type_identifier) @name (scoped_type_identifier (type_identifier) @name .)])] @reference.inherit))
(extends_interfaces
  (type_list
    [(type_identifier) @name
     (scoped_type_identifier (type_identifier) @name .)
     (generic_type [(type_identifier) @name (scoped_type_identifier (type_identifier) @name .)])] @reference.inherit))

; import a.b.C -> C, import static a.b.C.m -> m (a wildcard import a.b.* names nothing)
(import_declaration (scoped_identifier name: (identifier) @name) @reference.import .)
