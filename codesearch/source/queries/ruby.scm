(class name: [(constant) (scope_resolution)] @name) @scope.class
(module name: [(constant) (scope_resolution)] @name) @scope.module

; `class << self` is no scope of its own: its methods belong to the enclosing class.
(method name: (_) @name) @unit.method
(singleton_method object: (self) name: (_) @name) @unit.method
(singleton_method object: (constant) @qualifier name: (_) @name) @unit.method

; ---------------------------------------------------------------------------
; References, in the convention of tree-sitter's tags.scm files: the referring node as @reference.<kind>
; (call, type, inherit, import) and the name referred to as @name. They hold no @unit. or @scope. capture.
; `require` and `include` would need a predicate on the method's name: they are plain calls here.

; f(x), f x, obj.method, obj.method(x), Foo.new (a call of new), Foo::Bar.baz
(call method: [(identifier) (constant)] @name) @reference.call

; class A < B, class A < M::B
(superclass [(constant) @name (scope_resolution name: (constant) @name)] @reference.inherit)
