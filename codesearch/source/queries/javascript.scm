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

; import D, { a, b as c }, * as ns from "m": D, a, b, and the names bound in their stead (c, ns). @module is where
; they come from (kept as the reference's qualifier): what tells a library's name from the repository's.
(import_statement (import_clause (identifier) @name) source: (string (string_fragment) @module)) @reference.import
(import_statement
  (import_clause (named_imports (import_specifier name: (identifier) @name)))
  source: (string (string_fragment) @module)) @reference.import
(import_statement
  (import_clause (named_imports (import_specifier alias: (identifier) @name)))
  source: (string (string_fragment) @module)) @reference.import
(import_statement
  (import_clause (namespace_import (identifier) @name)) source: (string (string_fragment) @module)) @reference.import

; const x = require("./y"), const { a, b: c } = require("y"): x, a and b, from ./y or y. A call is an import
; only when @callee is `require` (references.py's IMPORT_CALLS: a query with strings would slow every parse).
(variable_declarator
  name: (identifier) @name
  value: (call_expression
    function: (identifier) @callee arguments: (arguments . (string (string_fragment) @module) .))) @reference.import
(variable_declarator
  name: (object_pattern [(shorthand_property_identifier_pattern) @name (pair_pattern key: (property_identifier) @name)])
  value: (call_expression
    function: (identifier) @callee arguments: (arguments . (string (string_fragment) @module) .))) @reference.import
