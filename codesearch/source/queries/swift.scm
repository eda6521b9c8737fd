; class, struct, enum, actor and extension are all class_declaration; an extension's name is a user_type.
(class_declaration name: [(type_identifier) (user_type)] @name) @scope.type
(protocol_declaration name: (type_identifier) @name) @scope.protocol

(function_declaration name: (simple_identifier) @name) @unit.function
(init_declaration "init" @name) @unit.constructor
(deinit_declaration "deinit" @name) @unit.destructor
(subscript_declaration "subscript" @name) @unit.subscript
