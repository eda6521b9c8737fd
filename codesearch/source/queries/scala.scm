(class_definition name: (identifier) @name) @scope.class
(object_definition name: (identifier) @name) @scope.object
(trait_definition name: (identifier) @name) @scope.trait
(enum_definition name: (identifier) @name) @scope.enum

(function_definition name: (identifier) @name) @unit.function
(given_definition name: (identifier) @name) @unit.given

; ---------------------------------------------------------------------------
; References, in the convention of tree-sitter's tags.scm files: the referring node as @reference.<kind>
; (call, type, inherit, import) and the name referred to as @name. They hold no @unit. or @scope. capture.

; f(x), obj.method(x), obj.method[T](x), Foo(x) (apply); new Foo(x) is a call of Foo
(call_expression
  function: [(identifier) @name
             (field_expression field: (identifier) @name)
             (generic_function function: [(identifier) @name (field_expression field: (identifier) @name)])]) @reference.call
(instance_expression
  [(type_identifier) @name
   (stable_type_identifier (type_identifier) @name)
   (generic_type type: [(type_identifier) @name (stable_type_identifier (type_identifier) @name)])]) @reference.call

; The type of a parameter, value, variable or result, of `new`, and a type argument: Foo, a.Foo, Foo[T]
(class_parameter
  type: [(type_identifier) @name
         (stable_type_identifier (type_identifier) @name)
         (generic_type type: [(type_identifier) @name (stable_type_identifier (type_identifier) @name)])] @reference.type)
(parameter
  type: [(type_identifier) @name
         (stable_type_identifier (type_identifier) @name)
         (generic_type type: [(type_identifier) @name (stable_type_identifier (type_identifier) @name)])] @reference.type)
(val_definition
  type: [(type_identifier) @name
         (stable_type_identifier (type_identifier) @name)
         (generic_type type: [(type_identifier) @name (stable_type_identifier (type_identifier) @name)])] @reference.type)
(var_definition
  type: [(type_identifier) @name
         (stable_type_identifier (type_identifier) @name)
         (generic_type type: [(type_identifier) @name (stable_type_identifier (type_identifier) @name)])] @reference.type)
(function_definition
  return_type: [(type_identifier) @name
                (stable_type_identifier (type_identifier) @name)
                (generic_type type: [(type_identifier) @name (stable_type_identifier (type_identifier) @name)])] @reference.type)
(instance_expression
  [(type_identifier) @name
   (stable_type_identifier (type_identifier) @name)
   (generic_type type: [(type_identifier) @name (stable_type_identifier (type_identifier) @name)])] @reference.type)
(type_arguments
  [(type_identifier) @name
   (stable_type_identifier (type_identifier) @name)
   (generic_type type: [(type_identifier) @name (stable_type_identifier (type_identifier) @name)])] @reference.type)

; class A extends B(x) with C with a.D[T]; trait K extends L; object O extends M
; (no field: the grammar's repeated `type:` field matches only its first child in a query)
(extends_clause
  [(type_identifier) @name
   (stable_type_identifier (type_identifier) @name)
   (generic_type type: [(type_identifier) @name (stable_type_identifier (type_identifier) @name)])] @reference.inherit)

; import a.b.C -> C, import a.b.{D, E => F} -> D and E (a wildcard import names nothing)
(import_declaration (identifier) @name @reference.import .)
(namespace_selectors
  [(identifier) @name (arrow_renamed_identifier name: (identifier) @name)] @reference.import)
