; function M.foo() / function M:foo() / local function foo()
(function_declaration name: (_) @name) @unit.function

; M.foo = function () ... end, local foo = function () ... end
(assignment_statement
  (variable_list name: (_) @name)
  (expression_list value: (function_definition))) @unit.function
(variable_declaration
  (assignment_statement
    (variable_list name: (_) @name)
    (expression_list value: (function_definition)))) @unit.function

; { foo = function () ... end }
(field name: (_) @name value: (function_definition)) @unit.function
