(class_declaration name: (identifier) @name) @scope.class
(object_declaration name: (identifier) @name) @scope.object
(companion_object name: (identifier) @name) @scope.object
(companion_object "companion" @name) @scope.object

; fun Library.describe(): an extension function is named by its receiver type
(function_declaration (user_type) @qualifier . name: (identifier) @name) @unit.function
(function_declaration name: (identifier) @name) @unit.function
(secondary_constructor "constructor" @name) @unit.constructor

; ---------------------------------------------------------------------------
; References, in the convention of tree-sitter's tags.scm files: the referring node as @reference.<kind>
; (call, type, inherit, import) and the name referred to as @name. They hold no @unit. or @scope. capture.

; f(x), obj.method(x), a?.b(), Foo() (a constructor call is a call of its class)
(call_expression . [(identifier) @name (navigation_expression (identifier) @name .)]) @reference.call

; Every written type: Foo, a.b.Foo, Foo<Bar> (the last identifier before the type arguments)
(user_type (identifier) @name .) @reference.type
(user_type (identifier) @name . (type_arguments)) @reference.type

; class A : B(), I, a.J<T>; object O : M(); interface K : L
(delegation_specifier
  [(user_type (identifier) @name .)
   (user_type (identifier) @name . (type_arguments))
   (constructor_invocation [(user_type (identifier) @name .) (user_type (identifier) @name . (type_arguments))])] @reference.inherit)

; import a.b.C -> C, import a.b.C as D -> C (import a.b.* gives b: the grammar's "*" is no node a query can test)
(import (qualified_identifier (identifier) @name .) @reference.import)
