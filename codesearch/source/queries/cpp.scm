(namespace_definition name: (_) @name) @scope.namespace
(class_specifier name: (_) @name body: (field_declaration_list)) @scope.class
(struct_specifier name: (_) @name body: (field_declaration_list)) @scope.struct

; The tagged node is the declarator; the unit is the whole definition with its body.
; Names may be qualified (Foo::bar) for out-of-class definitions.
(function_definition
  declarator: [
    (function_declarator declarator: (_) @name)
    (pointer_declarator declarator: (function_declarator declarator: (_) @name))
    (reference_declarator (function_declarator declarator: (_) @name))
    (pointer_declarator declarator: (pointer_declarator declarator: (function_declarator declarator: (_) @name)))
  ]) @unit.function

(union_specifier name: (type_identifier) @name body: (field_declaration_list)) @unit.union
(enum_specifier name: (type_identifier) @name body: (enumerator_list)) @unit.enum
; using Option_p = std::unique_ptr<Option>; template <class... T> using void_t = ...; typedef unsigned long hash_t;
; template <class T> concept Addable = ...: a name for a type is defined here, as C's typedef and Rust's type are.
; At file and namespace level only: inside a class (`struct is_x { using type = T; };`) a member alias stays one of
; the class's members, so a one-line class keeps its own chunk.
(translation_unit (alias_declaration name: (type_identifier) @name) @unit.type)
(declaration_list (alias_declaration name: (type_identifier) @name) @unit.type)
(translation_unit (template_declaration (alias_declaration name: (type_identifier) @name) @unit.type))
(declaration_list (template_declaration (alias_declaration name: (type_identifier) @name) @unit.type))
(translation_unit (type_definition declarator: (type_identifier) @name) @unit.type)
(declaration_list (type_definition declarator: (type_identifier) @name) @unit.type)
(translation_unit (template_declaration (concept_definition name: (identifier) @name) @unit.type))
(declaration_list (template_declaration (concept_definition name: (identifier) @name) @unit.type))

; ---------------------------------------------------------------------------
; References, in the convention of tree-sitter's tags.scm files: the referring node as @reference.<kind>
; (call, type, inherit, import) and the name referred to as @name. They hold no @unit. or @scope. capture.
; (#include is no reference here.)

; f(x), obj.m(x), ptr->m(x), ns::f(x), a::b::f(x), f<T>(x), ns::f<T>(x)
(call_expression
  function: [(identifier) @name
             (field_expression field: (field_identifier) @name)
             (qualified_identifier name: [(identifier) @name
                                          (qualified_identifier name: (identifier) @name)
                                          (template_function name: (identifier) @name)])
             (template_function name: (identifier) @name)]) @reference.call
; new Foo(x), new ns::Foo<T>(x) are calls of Foo
(new_expression
  type: [(type_identifier) @name
         (template_type name: (type_identifier) @name)
         (qualified_identifier name: [(type_identifier) @name (template_type name: (type_identifier) @name)])]) @reference.call

; The type of a declaration, field, parameter, result, cast or `new`, and a template argument:
; Foo, ns::Foo, Foo<T>, ns::Foo<T>
(declaration
  type: [(type_identifier) @name
         (template_type name: (type_identifier) @name)
         (qualified_identifier name: [(type_identifier) @name (template_type name: (type_identifier) @name)])] @reference.type)
(field_declaration
  type: [(type_identifier) @name
         (template_type name: (type_identifier) @name)
         (qualified_identifier name: [(type_identifier) @name (template_type name: (type_identifier) @name)])] @reference.type)
(parameter_declaration
  type: [(type_identifier) @name
         (template_type name: (type_identifier) @name)
         (qualified_identifier name: [(type_identifier) @name (template_type name: (type_identifier) @name)])] @reference.type)
(function_definition
  type: [(type_identifier) @name
         (template_type name: (type_identifier) @name)
         (qualified_identifier name: [(type_identifier) @name (template_type name: (type_identifier) @name)])] @reference.type)
(type_descriptor
  type: [(type_identifier) @name
         (template_type name: (type_identifier) @name)
         (qualified_identifier name: [(type_identifier) @name (template_type name: (type_identifier) @name)])] @reference.type)
(new_expression
  type: [(type_identifier) @name
         (template_type name: (type_identifier) @name)
         (qualified_identifier name: [(type_identifier) @name (template_type name: (type_identifier) @name)])] @reference.type)

; class A : public B<T>, private ns::I; struct S : Base
(base_class_clause
  [(type_identifier) @name
   (template_type name: (type_identifier) @name)
   (qualified_identifier name: [(type_identifier) @name (template_type name: (type_identifier) @name)])] @reference.inherit)

; using std::string -> string
(using_declaration (qualified_identifier name: (identifier) @name) @reference.import)
