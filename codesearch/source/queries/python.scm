(class_definition name: (identifier) @name) @scope.class

(function_definition name: (identifier) @name) @unit.function

; ---------------------------------------------------------------------------
; References, in the convention of tree-sitter's tags.scm files: the referring node as @reference.<kind>
; (call, type, inherit, import) and the name referred to as @name. They hold no @unit. or @scope. capture.

; f(x), obj.method(x), Foo() (a constructor is a call of its class)
(call function: [(identifier) @name (attribute attribute: (identifier) @name)]) @reference.call

; x: Foo, def f(a: Foo) -> Bar, list[Baz]: the identifier of each type expression
(type [(identifier) @name (attribute attribute: (identifier) @name)]) @reference.type
(generic_type . (identifier) @name) @reference.type

; class A(B, mod.C): keyword arguments (metaclass=M) are no base
(class_definition
  superclasses: (argument_list [(identifier) @name (attribute attribute: (identifier) @name)] @reference.inherit))

; import a.b.c -> c, from x import name, from x import name as alias -> name. @module, where given, is where
; the name comes from (kept as the reference's qualifier): what tells a library's name from the repository's.
(import_statement name: (dotted_name (identifier) @name .) @reference.import)
(import_statement name: (aliased_import name: (dotted_name (identifier) @name .)) @reference.import)
(import_from_statement module_name: (_) @module name: (dotted_name (identifier) @name .) @reference.import)
(import_from_statement
  module_name: (_) @module name: (aliased_import name: (dotted_name (identifier) @name .)) @reference.import)

; the names the file binds, when they are not the name imported: import a.b.c -> a; import m as alias,
; from x import name as alias -> alias
(import_statement name: (dotted_name . (identifier) @name) @reference.import)
(import_statement name: (aliased_import name: (dotted_name) @module alias: (identifier) @name) @reference.import)
(import_from_statement module_name: (_) @module name: (aliased_import alias: (identifier) @name) @reference.import)
