(class_declaration name: (name) @name) @scope.class
(interface_declaration name: (name) @name) @scope.interface
(trait_declaration name: (name) @name) @scope.trait
(enum_declaration name: (name) @name) @scope.enum

(function_definition name: (name) @name) @unit.function
(method_declaration name: (name) @name) @unit.method

; ---------------------------------------------------------------------------
; References, in the convention of tree-sitter's tags.scm files: the referring node as @reference.<kind>
; (call, type, inherit, import) and the name referred to as @name. They hold no @unit. or @scope. capture.

; f(x), \N\f(x), $obj->method(x), $obj?->method(x), Cls::method(x); new Foo(), new \N\Foo() are calls of Foo
(function_call_expression function: [(name) @name (qualified_name (name) @name .)]) @reference.call
(member_call_expression name: (name) @name) @reference.call
(nullsafe_member_call_expression name: (name) @name) @reference.call
(scoped_call_expression name: (name) @name) @reference.call
(object_creation_expression [(name) @name (qualified_name (name) @name .)]) @reference.call

; A declared type: Foo $p, ): Foo, private Foo $f, ?Foo, Foo|Bar
(named_type [(name) @name (qualified_name (name) @name .)]) @reference.type

; class A extends B implements I, \N\J { use T; }; interface K extends L
(base_clause [(name) @name (qualified_name (name) @name .)] @reference.inherit)
(class_interface_clause [(name) @name (qualified_name (name) @name .)] @reference.inherit)
(use_declaration [(name) @name (qualified_name (name) @name .)] @reference.inherit)

; use A\B\C -> C, use A\B\{D, E as F} -> D and E, use function A\g -> g
(namespace_use_clause . [(name) @name (qualified_name (name) @name .)]) @reference.import
