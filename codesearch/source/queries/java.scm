(class_declaration name: (identifier) @name) @scope.class
(interface_declaration name: (identifier) @name) @scope.interface
(enum_declaration name: (identifier) @name) @scope.enum
(record_declaration name: (identifier) @name) @scope.class
(annotation_type_declaration name: (identifier) @name) @scope.interface

(method_declaration name: (identifier) @name) @unit.method
(constructor_declaration name: (identifier) @name) @unit.constructor
(compact_constructor_declaration name: (identifier) @name) @unit.constructor
