(function_definition name: (word) @name) @unit.function

; ---------------------------------------------------------------------------
; References, in the convention of tree-sitter's tags.scm files: the referring node as @reference.<kind>
; (call, type, inherit, import) and the name referred to as @name. They hold no @unit. or @scope. capture.

; Every command is a call of its name: ls -l, my_function arg, source lib.sh
(command name: (command_name (word) @name)) @reference.call
