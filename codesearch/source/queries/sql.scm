; CREATE statements are units; the first object reference is the created object's name.
(statement (create_function (object_reference) @name)) @unit.function
(statement (create_procedure (object_reference) @name)) @unit.procedure
(statement (create_view (object_reference) @name)) @unit.view
(statement (create_materialized_view (object_reference) @name)) @unit.view
(statement (create_table (object_reference) @name)) @unit.table
(statement (create_trigger (object_reference) @name)) @unit.trigger
(statement (create_type (object_reference) @name)) @unit.type

; ---------------------------------------------------------------------------
; References, in the convention of tree-sitter's tags.scm files: the referring node as @reference.<kind>
; (call, type, inherit, import) and the name referred to as @name. They hold no @unit. or @scope. capture.

; count(*), lower(x), schema.fn(x)
(invocation (object_reference name: (identifier) @name)) @reference.call
