(class name: [(constant) (scope_resolution)] @name) @scope.class
(module name: [(constant) (scope_resolution)] @name) @scope.module

; `class << self` is no scope of its own: its methods belong to the enclosing class.
(method name: (_) @name) @unit.method
(singleton_method object: (self) name: (_) @name) @unit.method
(singleton_method object: (constant) @qualifier name: (_) @name) @unit.method
