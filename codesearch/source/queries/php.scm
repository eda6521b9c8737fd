(class_declaration name: (name) @name) @scope.class
(interface_declaration name: (name) @name) @scope.interface
(trait_declaration name: (name) @name) @scope.trait
(enum_declaration name: (name) @name) @scope.enum

(function_definition name: (name) @name) @unit.function
(method_declaration name: (name) @name) @unit.method
