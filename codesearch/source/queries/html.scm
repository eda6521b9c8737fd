; <script> and <style> bodies are chunked as JavaScript and CSS, at the HTML file's lines.
(script_element (raw_text) @inject.javascript)
(style_element (raw_text) @inject.css)

; Top-level sections: the children of <head> and <body>, or of the document when there is no <html>.
(element
  (start_tag (tag_name) @_parent (#any-of? @_parent "head" "body"))
  (element (start_tag (tag_name) @name)) @unit.section)
(document
  (element (start_tag (tag_name) @name (#not-match? @name "^(html|head|body)$"))) @unit.section)
