(function_definition name: (word) @name) @unit.function
