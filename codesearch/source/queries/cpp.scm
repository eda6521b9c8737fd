(namespace_definition name: (_) @name) @scope.namespace
(class_specifier name: (_) @name body: (field_declaration_list)) @scope.class
(struct_specifier name: (_) @name body: (field_declaration_list)) @scope.struct

; The tagged node is the declarator; the unit is the whole definition with its body.
; Names may be qualified (Foo::bar) for out-of-class definitions.
(function_definition
  declarator: [
    (function_declarator declarator: (_) @name)
    (pointer_declarator declarator: (function_declarator declarator: (_) @name))
    (reference_declarator (function_declarator declarator: (_) @name))
    (pointer_declarator declarator: (pointer_declarator declarator: (function_declarator declarator: (_) @name)))
  ]) @unit.function

(union_specifier name: (type_identifier) @name body: (field_declaration_list)) @unit.union
(enum_specifier name: (type_identifier) @name body: (enumerator_list)) @unit.enum
