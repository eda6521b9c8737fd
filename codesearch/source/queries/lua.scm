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

; ---------------------------------------------------------------------------
; References, in the convention of tree-sitter's tags.scm files: the referring node as @reference.<kind>
; (call, type, inherit, import) and the name referred to as @name. They hold no @unit. or @scope. capture.
; `require` would need a predicate on the function's name: it is a plain call here.

; f(x), M.f(x), obj:method(x), a.b.c(x)
(function_call
  name: [(identifier) @name
         (dot_index_expression field: (identifier) @name)
         (method_index_expression method: (identifier) @name)]) @reference.call
