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
; typedef unsigned long hash_t; typedef struct node node_t;
(type_definition declarator: (type_identifier) @name) @unit.type

; ---------------------------------------------------------------------------
; References, in the convention of tree-sitter's tags.scm files: the referring node as @reference.<kind>
; (call, type, inherit, import) and the name referred to as @name. They hold no @unit. or @scope. capture.
; (#include is no reference here.)

; f(x), obj.fn(x), ptr->fn(x)
(call_expression
  function: [(identifier) @name (field_expression field: (field_identifier) @name)]) @reference.call

; A typedef'd type in a declaration, field, parameter, result, cast or sizeof; struct Foo without a body
(declaration type: (type_identifier) @name @reference.type)
(field_declaration type: (type_identifier) @name @reference.type)
(parameter_declaration type: (type_identifier) @name @reference.type)
(function_definition type: (type_identifier) @name @reference.type)
(type_descriptor type: (type_identifier) @name @reference.type)
(struct_specifier name: (type_identifier) @name !body) @reference.type
(union_specifier name: (type_identifier) @name !body) @reference.type
(enum_specifier name: (type_identifier) @name !body) @reference.type
