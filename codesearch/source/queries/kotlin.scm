(class_declaration name: (identifier) @name) @scope.class
(object_declaration name: (identifier) @name) @scope.object
(companion_object name: (identifier) @name) @scope.object
(companion_object "companion" @name) @scope.object

; fun Library.describe(): an extension function is named by its receiver type
(function_declaration (user_type) @qualifier . name: (identifier) @name) @unit.function
(function_declaration name: (identifier) @name) @unit.function
(secondary_constructor "constructor" @name) @unit.constructor
