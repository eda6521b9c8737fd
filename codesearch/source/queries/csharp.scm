(namespace_declaration name: (_) @name) @scope.namespace
(class_declaration name: (identifier) @name) @scope.class
(struct_declaration name: (identifier) @name) @scope.struct
(interface_declaration name: (identifier) @name) @scope.interface
(record_declaration name: (identifier) @name) @scope.class
(enum_declaration name: (identifier) @name) @scope.enum

(method_declaration name: (identifier) @name) @unit.method
(constructor_declaration name: (identifier) @name) @unit.constructor
(destructor_declaration name: (identifier) @name) @unit.destructor
(operator_declaration operator: _ @name) @unit.operator
(property_declaration name: (identifier) @name) @unit.property
(indexer_declaration "this" @name) @unit.indexer
(event_declaration name: (identifier) @name) @unit.event
