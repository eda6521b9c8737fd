(mod_item name: (identifier) @name body: (declaration_list)) @scope.namespace
; impl Foo, impl<T> Trait for Foo<T>: the scope is named by the type, so methods read Foo::method.
(impl_item type: [(type_identifier) @name (scoped_type_identifier) @name (generic_type type: (_) @name)]) @scope.impl
(trait_item name: (type_identifier) @name) @scope.trait

(function_item name: (identifier) @name) @unit.function
(macro_definition name: (identifier) @name) @unit.macro
(struct_item name: (type_identifier) @name) @unit.struct
(enum_item name: (type_identifier) @name) @unit.enum
(union_item name: (type_identifier) @name) @unit.union
(type_item name: (type_identifier) @name) @unit.type

; ---------------------------------------------------------------------------
; References, in the convention of tree-sitter's tags.scm files: the referring node as @reference.<kind>
; (call, type, inherit, import) and the name referred to as @name. They hold no @unit. or @scope. capture.

; f(x), obj.method(x), Foo::new(x) (a call of new), a::b::f(x), f::<T>(x), obj.method::<T>(x)
(call_expression
  function: [(identifier) @name
             (field_expression field: (field_identifier) @name)
             (scoped_identifier name: (identifier) @name)
             (generic_function function: [(identifier) @name
                                          (field_expression field: (field_identifier) @name)
                                          (scoped_identifier name: (identifier) @name)])]) @reference.call
; Macro invocations (println!, assert_eq!, vec!) are left out: a tenth of all references for little use.

; The type of a field, parameter, result, reference, cast, let or struct literal, a type argument and
; the type of an impl: Foo, a::Foo, Foo<T>
(field_declaration
  type: [(type_identifier) @name
         (scoped_type_identifier name: (type_identifier) @name)
         (generic_type type: [(type_identifier) @name (scoped_type_identifier name: (type_identifier) @name)])] @reference.type)
(parameter
  type: [(type_identifier) @name
         (scoped_type_identifier name: (type_identifier) @name)
         (generic_type type: [(type_identifier) @name (scoped_type_identifier name: (type_identifier) @name)])] @reference.type)
(function_item
  return_type: [(type_identifier) @name
                (scoped_type_identifier name: (type_identifier) @name)
                (generic_type type: [(type_identifier) @name (scoped_type_identifier name: (type_identifier) @name)])] @reference.type)
(function_signature_item
  return_type: [(type_identifier) @name
                (scoped_type_identifier name: (type_identifier) @name)
                (generic_type type: [(type_identifier) @name (scoped_type_identifier name: (type_identifier) @name)])] @reference.type)
(reference_type
  type: [(type_identifier) @name
         (scoped_type_identifier name: (type_identifier) @name)
         (generic_type type: [(type_identifier) @name (scoped_type_identifier name: (type_identifier) @name)])] @reference.type)
(type_cast_expression
  type: [(type_identifier) @name
         (scoped_type_identifier name: (type_identifier) @name)
         (generic_type type: [(type_identifier) @name (scoped_type_identifier name: (type_identifier) @name)])] @reference.type)
(let_declaration
  type: [(type_identifier) @name
         (scoped_type_identifier name: (type_identifier) @name)
         (generic_type type: [(type_identifier) @name (scoped_type_identifier name: (type_identifier) @name)])] @reference.type)
(type_arguments
  [(type_identifier) @name
   (scoped_type_identifier name: (type_identifier) @name)
   (generic_type type: [(type_identifier) @name (scoped_type_identifier name: (type_identifier) @name)])] @reference.type)
(struct_expression
  name: [(type_identifier) @name
         (scoped_type_identifier name: (type_identifier) @name)
         (generic_type_with_turbofish type: [(type_identifier) @name (scoped_identifier name: (identifier) @name)])] @reference.type)
(impl_item
  type: [(type_identifier) @name
         (scoped_type_identifier name: (type_identifier) @name)
         (generic_type type: [(type_identifier) @name (scoped_type_identifier name: (type_identifier) @name)])] @reference.type)

; impl Trait for T, impl a::Trait<U> for T -> Trait; trait K: L + M -> L and M
(impl_item
  trait: [(type_identifier) @name
          (scoped_type_identifier name: (type_identifier) @name)
          (generic_type type: [(type_identifier) @name (scoped_type_identifier name: (type_identifier) @name)])] @reference.inherit)
(trait_item
  bounds: (trait_bounds
            [(type_identifier) @name
             (scoped_type_identifier name: (type_identifier) @name)
             (generic_type type: [(type_identifier) @name (scoped_type_identifier name: (type_identifier) @name)])] @reference.inherit))

; use a::b::C -> C, use a::{D, e::F as G} -> D and F, use a -> a (a wildcard names nothing)
(use_declaration
  argument: [(identifier) @name
             (scoped_identifier name: (identifier) @name)
             (use_as_clause path: [(identifier) @name (scoped_identifier name: (identifier) @name)])] @reference.import)
(use_list
  [(identifier) @name
   (scoped_identifier name: (identifier) @name)
   (use_as_clause path: [(identifier) @name (scoped_identifier name: (identifier) @name)])] @reference.import)
