(class_definition name: (identifier) @name) @scope.class
(object_definition name: (identifier) @name) @scope.object
(trait_definition name: (identifier) @name) @scope.trait
(enum_definition name: (identifier) @name) @scope.enum

(function_definition name: (identifier) @name) @unit.function
(given_definition name: (identifier) @name) @unit.given
