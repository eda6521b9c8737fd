(namespace_declaration name: (_) @name) @scope.namespace
(class_declaration name: (identifier) @name) @scope.class
(struct_declaration name: (identifier) @name) @scope.struct
(interface_declaration name: (identifier) @name) @scope.interface
(record_declaration name: (identifier) @name) @scope.class
(enum_declaration name: (identifier) @name) @scope.enum

(method_declaration name: (identifier) @name) @unit.method
(constructor_declaration name: (identifier) @name) @unit.constructor
(destructor_declaration name: (identifier) @name) @unit.destructor
(operator_declaration operator: _ @name) @unit.operator
(property_declaration name: (identifier) @name) @unit.property
(indexer_declaration "this" @name) @unit.indexer
(event_declaration name: (identifier) @name) @unit.event

; ---------------------------------------------------------------------------
; References, in the convention of tree-sitter's tags.scm files: the referring node as @reference.<kind>
; (call, type, inherit, import) and the name referred to as @name. They hold no @unit. or @scope. capture.

; F(x), obj.Method(x), F<T>(x), obj.Method<T>(x); new Foo(), new A.Foo<T>() are calls of Foo
(invocation_expression
  function: [(identifier) @name
             (generic_name (identifier) @name)
             (member_access_expression name: [(identifier) @name (generic_name (identifier) @name)])]) @reference.call
(object_creation_expression
  type: [(identifier) @name
         (generic_name (identifier) @name)
         (qualified_name name: [(identifier) @name (generic_name (identifier) @name)])]) @reference.call

; The type of a variable, field, parameter, property, method result, cast or `new`, and a type argument:
; Foo, A.Foo, Foo<T>
(variable_declaration
  type: [(identifier) @name
         (generic_name (identifier) @name)
         (qualified_name name: [(identifier) @name (generic_name (identifier) @name)])] @reference.type)
(parameter
  type: [(identifier) @name
         (generic_name (identifier) @name)
         (qualified_name name: [(identifier) @name (generic_name (identifier) @name)])] @reference.type)
(property_declaration
  type: [(identifier) @name
         (generic_name (identifier) @name)
         (qualified_name name: [(identifier) @name (generic_name (identifier) @name)])] @reference.type)
(method_declaration
  returns: [(identifier) @name
            (generic_name (identifier) @name)
            (qualified_name name: [(identifier) @name (generic_name (identifier) @name)])] @reference.type)
(cast_expression
  type: [(identifier) @name
         (generic_name (identifier) @name)
         (qualified_name name: [(identifier) @name (generic_name (identifier) @name)])] @reference.type)
(object_creation_expression
  type: [(identifier) @name
         (generic_name (identifier) @name)
         (qualified_name name: [(identifier) @name (generic_name (identifier) @name)])] @reference.type)
(type_argument_list
  [(identifier) @name
   (generic_name (identifier) @name)
   (qualified_name name: [(identifier) @name (generic_name (identifier) @name)])] @reference.type)

; Foo?, Foo[]
(nullable_type type: [(identifier) @name (generic_name (identifier) @name)] @reference.type)
(array_type type: [(identifier) @name (generic_name (identifier) @name)] @reference.type)

; class A : B<T>, I, N.J; struct S : I; interface K : L
(base_list
  [(identifier) @name
   (generic_name (identifier) @name)
   (qualified_name name: [(identifier) @name (generic_name (identifier) @name)])] @reference.inherit)

; using System.Text -> Text, using A = N.B -> B, using static System.Math -> Math
(using_directive [(identifier) @name (qualified_name name: (identifier) @name)] @reference.import .)
