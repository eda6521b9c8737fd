(mod_item name: (identifier) @name body: (declaration_list)) @scope.namespace
; impl Foo, impl<T> Trait for Foo<T>: the scope is named by the type, so methods read Foo::method.
(impl_item type: [(type_identifier) @name (scoped_type_identifier) @name (generic_type type: (_) @name)]) @scope.impl
(trait_item name: (type_identifier) @name) @scope.trait

(function_item name: (identifier) @name) @unit.function
(macro_definition name: (identifier) @name) @unit.macro
(struct_item name: (type_identifier) @name) @unit.struct
(enum_item name: (type_identifier) @name) @unit.enum
(union_item name: (type_identifier) @name) @unit.union
