(class_definition name: (identifier) @name) @scope.class

(function_definition name: (identifier) @name) @unit.function
