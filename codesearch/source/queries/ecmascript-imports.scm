; The imports of JavaScript and TypeScript (and TSX), whose grammars share these nodes: read after each one's own
; query file (languages.LanguageSpec.shared_queries).
; import D, { a, type T, b as c }, * as ns from "m": D, a, T, b, and the names bound in their stead (c, ns). @module is
; where they come from (kept as the reference's qualifier): what tells a library's name from the repository's.
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
