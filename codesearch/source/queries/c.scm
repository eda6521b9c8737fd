; The tagged node in C is the declarator; the unit is the whole definition with its body.
(function_definition
  declarator: [
    (function_declarator declarator: (identifier) @name)
    (pointer_declarator declarator: (function_declarator declarator: (identifier) @name))
    (pointer_declarator declarator: (pointer_declarator declarator: (function_declarator declarator: (identifier) @name)))
  ]) @unit.function

(struct_specifier name: (type_identifier) @name body: (field_declaration_list)) @unit.struct
(union_specifier name: (type_identifier) @name body: (field_declaration_list)) @unit.union
(enum_specifier name: (type_identifier) @name body: (enumerator_list)) @unit.enum
(type_definition type: [(struct_specifier body: (_)) (union_specifier body: (_)) (enum_specifier body: (_))] declarator: (type_identifier) @name) @unit.type
