(class_declaration name: (_) @name) @scope.class
(class name: (_) @name) @scope.class
; const handlers = { clear() {...} }: the object names its functions
(variable_declarator name: (identifier) @name value: (object)) @scope.object

(function_declaration name: (identifier) @name) @unit.function
(generator_function_declaration name: (identifier) @name) @unit.function
(method_definition name: (_) @name) @unit.method

; const f = () => ..., const f = function () {...}
(lexical_declaration
  (variable_declarator
    name: (identifier) @name
    value: [(arrow_function) (function_expression) (generator_function)])) @unit.function
(variable_declaration
  (variable_declarator
    name: (identifier) @name
    value: [(arrow_function) (function_expression) (generator_function)])) @unit.function

; obj.f = function () {...}, exports.f = () => ...
(expression_statement
  (assignment_expression
    left: (member_expression object: (_) @qualifier property: (property_identifier) @name)
    right: [(arrow_function) (function_expression) (generator_function)])) @unit.function

; { f: function () {...} } and { f: () => ... }
(pair
  key: [(property_identifier) (string)] @name
  value: [(arrow_function) (function_expression) (generator_function)]) @unit.method

; defineGetter(req, 'host', function host() {...}): a named function passed to a top-level call
(expression_statement
  (call_expression
    arguments: (arguments (function_expression name: (identifier) @name)))) @unit.function
