"""The reference patterns of the query files (@reference.call/type/inherit/import with @name, as in tree-sitter's
tags.scm files): each language's query still compiles, finds the references of a small snippet, and keeps its
reference matches apart from the definitions the chunker reads."""

from __future__ import annotations

import pytest
from tree_sitter import Parser, QueryCursor

from codesearch.source.languages import load_language, spec_by_name

# language: (snippet, the (kind, name) pairs it must yield; more may come)
SNIPPETS: dict[str, tuple[str, set[tuple[str, str]]]] = {
    "python": (
        """\
from os.path import join
import a.b.c
from . import z as w
class A(B, mod.C, metaclass=M):
    def f(self, a: Foo, b: list[Bar]) -> Baz:
        obj.method(1)
        return Thing()
""",
        {("import", "join"), ("import", "c"), ("import", "z"), ("inherit", "B"), ("inherit", "C"),
         ("type", "Foo"), ("type", "Bar"), ("type", "Baz"), ("call", "method"), ("call", "Thing")},
    ),
    "javascript": (
        """\
import D, { a, b as c } from "mod";
class A extends B {
  m() { obj.method(1); g(); return new Foo(); }
}
class E extends ns.F {}
""",
        {("import", "D"), ("import", "a"), ("import", "b"), ("inherit", "B"), ("inherit", "F"),
         ("call", "method"), ("call", "g"), ("call", "Foo")},
    ),
    "typescript": (
        """\
import { a, type T } from "mod";
class A extends B implements I, ns.J<X> {
  x: Foo;
  m(p: Bar<Baz>): ns.Qux { obj.method(1); return new Widget() as Cast; }
}
interface K extends L {}
""",
        {("import", "a"), ("import", "T"), ("inherit", "B"), ("inherit", "I"), ("inherit", "J"), ("inherit", "L"),
         ("type", "Foo"), ("type", "Bar"), ("type", "Baz"), ("type", "Qux"), ("type", "Cast"), ("type", "X"),
         ("call", "method"), ("call", "Widget")},
    ),
    "tsx": (
        """\
import { useState } from "react";
class A extends B implements I {
  x: Foo;
  render() { const [v] = useState<Bar>(0); return <div onClick={() => obj.handle(v)} />; }
}
""",
        {("import", "useState"), ("inherit", "B"), ("inherit", "I"), ("type", "Foo"), ("type", "Bar"),
         ("call", "useState"), ("call", "handle")},
    ),
    "go": (
        """\
package main

import (
	"fmt"
	str "strings"
)

type S struct {
	Base
	f   Foo
	bar []pkg.Bar
}

func (s *S) m(a Foo) Res {
	fmt.Println(1)
	x := T{1}
	return New(a)
}
""",
        {("import", "fmt"), ("import", "strings"), ("inherit", "Base"), ("type", "Foo"), ("type", "Bar"),
         ("type", "S"), ("type", "Res"), ("type", "T"), ("call", "Println"), ("call", "New")},
    ),
    "java": (
        """\
import a.b.C;
import static a.b.D.m;
class A<T> extends B<T> implements I, x.J {
  private Foo f;
  Res m(Par p) { obj.method(1); return new Widget<>(); }
}
""",
        {("import", "C"), ("import", "m"), ("inherit", "B"), ("inherit", "I"), ("inherit", "J"),
         ("type", "Foo"), ("type", "Res"), ("type", "Par"), ("type", "Widget"),
         ("call", "method"), ("call", "Widget")},
    ),
    "kotlin": (
        """\
import a.b.C
import a.b.D as E
class A(val x: Foo) : B(x), I {
    fun m(p: Par): List<Res> { obj.method(1); return Widget() }
}
""",
        {("import", "C"), ("import", "D"), ("inherit", "B"), ("inherit", "I"),
         ("type", "Foo"), ("type", "Par"), ("type", "List"), ("type", "Res"),
         ("call", "method"), ("call", "Widget")},
    ),
    "scala": (
        """\
import a.b.C
import a.b.{D, E => F}
class A(x: Foo) extends B(x) with I {
  def m(p: Par): List[Res] = { obj.method(1); new Widget() }
}
""",
        {("import", "C"), ("import", "D"), ("import", "E"), ("inherit", "B"), ("inherit", "I"),
         ("type", "Foo"), ("type", "Par"), ("type", "List"), ("type", "Res"), ("type", "Widget"),
         ("call", "method"), ("call", "Widget")},
    ),
    "csharp": (
        """\
using System.Text;
namespace N {
class A<T> : B<T>, I, X.J {
    private Foo f;
    Res M(Par p) { obj.Method(1); var l = new List<Item>(); return (Res)p; }
}
}
""",
        {("import", "Text"), ("inherit", "B"), ("inherit", "I"), ("inherit", "J"),
         ("type", "Foo"), ("type", "Res"), ("type", "Par"), ("type", "List"), ("type", "Item"),
         ("call", "Method"), ("call", "List")},
    ),
    "php": (
        """\
<?php
use A\\B\\C;
use A\\B\\{D, E as F};
class A extends B implements I, \\X\\J {
    use T1;
    function m(Par $p): Res { $obj->method(1); Qux::stat(); helper(); return new Widget(); }
}
""",
        {("import", "C"), ("import", "D"), ("import", "E"), ("inherit", "B"), ("inherit", "I"), ("inherit", "J"),
         ("inherit", "T1"), ("type", "Par"), ("type", "Res"),
         ("call", "method"), ("call", "stat"), ("call", "helper"), ("call", "Widget")},
    ),
    "ruby": (
        """\
class A < B
  def m(p)
    obj.method(1)
    puts p
    Widget.new
  end
end
class C < M::D; end
""",
        {("inherit", "B"), ("inherit", "D"), ("call", "method"), ("call", "puts"), ("call", "new")},
    ),
    "c": (
        """\
#include <stdio.h>
struct S { Foo f; struct Bar *b; };
Res m(Par p) { printf("x"); obj->fn(1); return (Res)p; }
""",
        {("type", "Foo"), ("type", "Bar"), ("type", "Res"), ("type", "Par"), ("call", "printf"), ("call", "fn")},
    ),
    "cpp": (
        """\
#include <vector>
using std::string;
class A : public B<T>, private ns::I { Foo f; std::vector<Bar> v; };
Res m(Par p) { obj.method(1); ns::f(); a::b::g(); auto w = new Widget(); }
""",
        {("import", "string"), ("inherit", "B"), ("inherit", "I"), ("type", "Foo"), ("type", "vector"),
         ("type", "Bar"), ("type", "Res"), ("type", "Par"), ("type", "Widget"),
         ("call", "method"), ("call", "f"), ("call", "g"), ("call", "Widget")},
    ),
    "rust": (
        """\
use a::b::C;
use a::{D, e::F as G};
struct S { f: Foo, v: Vec<Bar> }
impl Trait for S {}
fn m(p: Par) -> Res { obj.method(1); Widget::new(); a::b::f(); }
""",
        {("import", "C"), ("import", "D"), ("import", "F"), ("inherit", "Trait"),
         ("type", "Foo"), ("type", "Vec"), ("type", "Bar"), ("type", "Par"), ("type", "Res"), ("type", "S"),
         ("call", "method"), ("call", "new"), ("call", "f")},
    ),
    "swift": (
        """\
import Foundation
import UIKit.UIView
class A: B, P {
    var f: Foo
    func m(p: Par) -> Res { obj.method(1); return Widget() }
}
""",
        {("import", "Foundation"), ("import", "UIView"), ("inherit", "B"), ("inherit", "P"),
         ("type", "Foo"), ("type", "Par"), ("type", "Res"), ("call", "method"), ("call", "Widget")},
    ),
    "lua": (
        """\
local json = require("json")
obj.method(1)
obj:other(2)
helper()
""",
        {("call", "require"), ("call", "method"), ("call", "other"), ("call", "helper")},
    ),
    "sql": (
        "select count(*), lower(name), s.fn(x) from t;\n",
        {("call", "count"), ("call", "lower"), ("call", "fn")},
    ),
    "bash": (
        """\
source ./lib.sh
greet() { echo "hi $1"; }
greet world | grep hi
""",
        {("call", "source"), ("call", "echo"), ("call", "greet"), ("call", "grep")},
    ),
}

# Languages whose query file has no reference patterns.
WITHOUT_REFERENCES = ("html", "css")


def references(language_name: str, source: str) -> set[tuple[str, str]]:
    """The (kind, name) of each @reference.<kind> match the language's query finds in `source`."""
    language, query = load_language(spec_by_name(language_name))
    data = source.encode("utf-8")
    tree = Parser(language).parse(data)
    found = set()
    for _pattern, captures in QueryCursor(query).matches(tree.root_node):
        for capture in captures:
            if capture.startswith("reference."):
                for node in captures["name"]:
                    found.add((capture.split(".", 1)[1], data[node.start_byte:node.end_byte].decode("utf-8")))
    return found


@pytest.mark.parametrize("language_name", sorted(SNIPPETS))
def test_query_compiles_without_strings(language_name):
    loaded = load_language(spec_by_name(language_name))
    assert loaded is not None
    _language, query = loaded
    # A query with strings (a predicate's) makes the chunker parse with text: reference patterns must add none.
    assert query.string_count == 0


@pytest.mark.parametrize("language_name", sorted(SNIPPETS))
def test_references_found(language_name):
    source, expected = SNIPPETS[language_name]
    found = references(language_name, source)
    assert expected <= found, f"missing: {sorted(expected - found)}"


@pytest.mark.parametrize("language_name", sorted(SNIPPETS))
def test_reference_matches_are_no_definitions(language_name):
    """Each reference match names one thing and holds no @unit./@scope. capture, so the chunker's
    definitions are what they were."""
    source, _expected = SNIPPETS[language_name]
    language, query = load_language(spec_by_name(language_name))
    tree = Parser(language).parse(source.encode("utf-8"))
    seen = 0
    for _pattern, captures in QueryCursor(query).matches(tree.root_node):
        kinds = [capture for capture in captures if capture.startswith("reference.")]
        if not kinds:
            continue
        seen += 1
        assert len(kinds) == 1
        assert kinds[0].split(".", 1)[1] in {"call", "type", "inherit", "import"}
        assert len(captures.get("name", [])) == 1
        assert not any(capture.startswith(("unit.", "scope.", "inject.")) for capture in captures)
    assert seen


def test_definitions_are_not_references():
    """A definition's own name is no reference: class A, def f, struct S, fn m."""
    cases = {
        "python": ("class Thing:\n    def run(self): pass\n", {"Thing", "run"}),
        "java": ("class Thing { void run() {} }\n", {"Thing", "run"}),
        "rust": ("struct Thing;\nfn run() {}\n", {"Thing", "run"}),
        "go": ("package m\ntype Thing struct{}\nfunc run() {}\n", {"Thing", "run"}),
        "csharp": ("class Thing { void Run() {} }\n", {"Thing", "Run"}),
        "scala": ("class Thing { def run(): Unit = {} }\n", {"Thing", "run"}),
    }
    for language_name, (source, names) in cases.items():
        found = {name for _kind, name in references(language_name, source)}
        assert not names & found, (language_name, names & found)


@pytest.mark.parametrize("language_name", WITHOUT_REFERENCES)
def test_languages_without_references_still_load(language_name):
    assert load_language(spec_by_name(language_name)) is not None


def collected(language_name: str, source: str) -> list[tuple[str, str, int, str]]:
    """What the chunker keeps: (name, kind, row, qualifier) as source/references.py collects them."""
    from codesearch.source.references import collect_references

    language, query = load_language(spec_by_name(language_name))
    data = source.encode("utf-8")
    return collect_references(QueryCursor(query).matches(Parser(language).parse(data).root_node), data)


def test_an_import_keeps_where_it_comes_from_and_the_names_it_binds():
    python = {(name, qualifier) for name, kind, _row, qualifier in collected("python", """\
import os.path
import json as _json
from werkzeug.exceptions import abort
from .helpers import flash as notify
""") if kind == "import"}
    assert python == {("os", ""), ("path", "os"), ("json", ""), ("_json", "json"),
                      ("abort", "werkzeug.exceptions"), ("flash", ".helpers"), ("notify", ".helpers")}
    javascript = {(name, qualifier) for name, kind, _row, qualifier in collected("javascript", """\
import D, { a as b } from "mod";
import * as ns from "./ns.js";
const { x, y: z } = require("./x");
const w = require("w");
const v = notRequire("v");
""") if kind == "import"}
    assert javascript == {("D", "mod"), ("a", "mod"), ("b", "mod"), ("ns", "./ns.js"), ("x", "./x"), ("y", "./x"),
                          ("w", "w")}


def test_a_qualifier_is_the_chain_a_member_is_reached_through():
    calls = {name: qualifier for name, kind, _row, qualifier in collected("python", """\
os.path.join(a)
super().save()
Config(path).load()
items[0].pop()
self.cache.clear()
""") if kind == "call"}
    assert calls == {"join": "os.path", "super": "", "save": "super", "Config": "", "load": "Config()", "pop": ".",
                     "clear": "self.cache"}
    assert ("render", "call", 0, "ns.View()") in collected("javascript", "new ns.View(x).render();\n")
