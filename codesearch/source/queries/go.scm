(type_declaration (type_spec name: (type_identifier) @name type: [(struct_type) (interface_type)])) @scope.type

(function_declaration name: (identifier) @name) @unit.function
(method_declaration
  receiver: (parameter_list (parameter_declaration type: [(type_identifier) @qualifier (pointer_type (type_identifier) @qualifier) (generic_type (type_identifier) @qualifier) (pointer_type (generic_type (type_identifier) @qualifier))]))
  name: (field_identifier) @name) @unit.method
