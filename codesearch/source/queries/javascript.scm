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

; res.set = res.header = function () {...}: the outer name (one chunk has one name; the inner is an alias)
(expression_statement
  (assignment_expression
    left: (member_expression object: (_) @qualifier property: (property_identifier) @name)
    right: (assignment_expression
      right: [(arrow_function) (function_expression) (generator_function)]))) @unit.function

; { f: function () {...} } and { f: () => ... }
(pair
  key: [(property_identifier) (string)] @name
  value: [(arrow_function) (function_expression) (generator_function)]) @unit.method

; defineGetter(req, 'host', function host() {...}): a named function passed to a top-level call
(expression_statement
  (call_expression
    arguments: (arguments (function_expression name: (identifier) @name)))) @unit.function

; ---------------------------------------------------------------------------
; References, in the convention of tree-sitter's tags.scm files: the referring node as @reference.<kind>
; (call, type, inherit, import) and the name referred to as @name. They hold no @unit. or @scope. capture.

; f(x), obj.method(x); new Foo(), new ns.Foo() are calls of Foo
(call_expression
  function: [(identifier) @name (member_expression property: (property_identifier) @name)]) @reference.call
(new_expression
  constructor: [(identifier) @name (member_expression property: (property_identifier) @name)]) @reference.call

; class A extends B, class A extends ns.B
(class_heritage
  [(identifier) @name (member_expression property: (property_identifier) @name)] @reference.inherit)

