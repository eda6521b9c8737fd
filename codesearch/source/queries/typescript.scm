(class_declaration name: (type_identifier) @name) @scope.class
(abstract_class_declaration name: (type_identifier) @name) @scope.class
(class name: (type_identifier) @name) @scope.class
(interface_declaration name: (type_identifier) @name) @scope.interface
(internal_module name: (_) @name) @scope.namespace
(variable_declarator name: (identifier) @name value: (object)) @scope.object

(function_declaration name: (identifier) @name) @unit.function
(generator_function_declaration name: (identifier) @name) @unit.function
(method_definition name: (_) @name) @unit.method
(enum_declaration name: (identifier) @name) @unit.enum
(type_alias_declaration name: (type_identifier) @name) @unit.type

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

; class fields holding functions: handle = () => {...}
(public_field_definition
  name: (property_identifier) @name
  value: [(arrow_function) (function_expression)]) @unit.method

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

; x: Foo, (p: Foo<Bar>): ns.Baz, f<Foo>(), x as Foo, <Foo>x, Foo | Bar, Foo[]
(type_annotation
  [(type_identifier) @name
   (nested_type_identifier name: (type_identifier) @name)
   (generic_type name: [(type_identifier) @name (nested_type_identifier name: (type_identifier) @name)])] @reference.type)
(type_arguments
  [(type_identifier) @name
   (nested_type_identifier name: (type_identifier) @name)
   (generic_type name: [(type_identifier) @name (nested_type_identifier name: (type_identifier) @name)])] @reference.type)
(as_expression (type_identifier) @name @reference.type)
(union_type (type_identifier) @name @reference.type)
(array_type (type_identifier) @name @reference.type)

; class A extends B implements I, ns.J<T>; interface K extends L, ns.M
(extends_clause
  value: [(identifier) @name (member_expression property: (property_identifier) @name)] @reference.inherit)
(implements_clause
  [(type_identifier) @name
   (nested_type_identifier name: (type_identifier) @name)
   (generic_type name: [(type_identifier) @name (nested_type_identifier name: (type_identifier) @name)])] @reference.inherit)
(extends_type_clause
  type: [(type_identifier) @name
         (nested_type_identifier name: (type_identifier) @name)
         (generic_type name: [(type_identifier) @name (nested_type_identifier name: (type_identifier) @name)])] @reference.inherit)

