; The spec is the definition, so each type of a group `type ( A struct{...}; B struct{...} )` is one of its own;
; a declaration of one type wraps it (syntax.SINGLE_WRAPPER_TYPES).
(type_declaration (type_spec name: (type_identifier) @name type: [(struct_type) (interface_type)]) @scope.type)
; type EditType uint8, type Matcher func(*http.Request) bool, type Set map[string]bool, type A = B
(type_declaration (type_spec name: (type_identifier) @name type: [(type_identifier) (qualified_type) (generic_type) (pointer_type) (slice_type) (array_type) (map_type) (channel_type) (function_type)]) @unit.type)
(type_declaration (type_alias name: (type_identifier) @name) @unit.type)

(function_declaration name: (identifier) @name) @unit.function
(method_declaration
  receiver: (parameter_list (parameter_declaration type: [(type_identifier) @qualifier (pointer_type (type_identifier) @qualifier) (generic_type (type_identifier) @qualifier) (pointer_type (generic_type (type_identifier) @qualifier))]))
  name: (field_identifier) @name) @unit.method

; ---------------------------------------------------------------------------
; References, in the convention of tree-sitter's tags.scm files: the referring node as @reference.<kind>
; (call, type, inherit, import) and the name referred to as @name. They hold no @unit. or @scope. capture.

; f(x), pkg.Func(x), obj.Method(x)
(call_expression
  function: [(identifier) @name (selector_expression field: (field_identifier) @name)]) @reference.call
; New[T](x), pkg.Make[T](x): the grammar reads an explicit instantiation as a conversion to a generic type
(type_conversion_expression
  type: (generic_type type: [(type_identifier) @name (qualified_type name: (type_identifier) @name)])) @reference.call

; pkg.Type anywhere; a bare Type as a parameter, result, field, variable, pointer, composite literal,
; generic type or type argument. (A bare []T, map[K]T or x.(T) holds a builtin four times in five: left out,
; as each match costs the chunker time.)
(qualified_type name: (type_identifier) @name) @reference.type
(parameter_declaration type: (type_identifier) @name @reference.type)
(variadic_parameter_declaration type: (type_identifier) @name @reference.type)
(field_declaration type: (type_identifier) @name @reference.type)
(var_spec type: (type_identifier) @name @reference.type)
(method_declaration result: (type_identifier) @name @reference.type)
(function_declaration result: (type_identifier) @name @reference.type)
(pointer_type (type_identifier) @name @reference.type)
(generic_type type: (type_identifier) @name @reference.type)
(composite_literal type: (type_identifier) @name @reference.type)
(type_arguments (type_elem (type_identifier) @name @reference.type))

; Embedding: a struct's anonymous field or an interface's embedded interface
(field_declaration_list
  (field_declaration !name type: [(type_identifier) @name
                                  (qualified_type name: (type_identifier) @name)
                                  (pointer_type [(type_identifier) @name (qualified_type name: (type_identifier) @name)])] @reference.inherit))
(interface_type
  (type_elem . [(type_identifier) @name (qualified_type name: (type_identifier) @name)] @reference.inherit .))

; import "a/b/c" and import x "a/b/c": the whole path (Go names no single imported symbol)
(import_spec path: (interpreted_string_literal (interpreted_string_literal_content) @name)) @reference.import
