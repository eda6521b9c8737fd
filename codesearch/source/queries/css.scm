; @media (max-width: 600px) .card
(media_statement "@media" @qualifier . (_) @name) @scope.media
(supports_statement "@supports" @qualifier . (_) @name) @scope.supports

(rule_set (selectors) @name) @unit.rule
(keyframes_statement (keyframes_name) @name) @unit.keyframes
