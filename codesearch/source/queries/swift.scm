; class, struct, enum, actor and extension are all class_declaration; an extension's name is a user_type, and it
; adds to a type defined elsewhere (a question of the name asks for the definition first, fuse.py).
(class_declaration name: (type_identifier) @name) @scope.type
(class_declaration name: (user_type) @name) @scope.extension
(protocol_declaration name: (type_identifier) @name) @scope.protocol

(function_declaration name: (simple_identifier) @name) @unit.function
(init_declaration "init" @name) @unit.constructor
(deinit_declaration "deinit" @name) @unit.destructor
(subscript_declaration "subscript" @name) @unit.subscript

; ---------------------------------------------------------------------------
; References, in the convention of tree-sitter's tags.scm files: the referring node as @reference.<kind>
; (call, type, inherit, import) and the name referred to as @name. They hold no @unit. or @scope. capture.

; f(x), obj.method(x), Foo(x) (an initializer call is a call of its type)
(call_expression
  . [(simple_identifier) @name
     (navigation_expression suffix: (navigation_suffix suffix: (simple_identifier) @name))]) @reference.call
; Foo<T>(x): the grammar reads a call with type arguments as a constructor
(constructor_expression
  constructed_type: [(user_type (type_identifier) @name .) (user_type (type_identifier) @name . (type_arguments))]) @reference.call

; Every written type: Foo, A.Foo, Foo<T> (the last type identifier before the type arguments)
(user_type (type_identifier) @name .) @reference.type
(user_type (type_identifier) @name . (type_arguments)) @reference.type

; class A: B, P; struct S: Codable; extension T: U; protocol K: L
(inheritance_specifier
  inherits_from: [(user_type (type_identifier) @name .)
                  (user_type (type_identifier) @name . (type_arguments))] @reference.inherit)

; import Foundation, import UIKit.UIView -> UIView
(import_declaration (identifier (simple_identifier) @name .) @reference.import)
