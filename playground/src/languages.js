// Syntax highlighting per catalog language name: a CodeMirror language
// package where one exists, else a legacy stream mode, else plain text.
import { StreamLanguage } from "@codemirror/language";
import { python } from "@codemirror/lang-python";
import { cpp } from "@codemirror/lang-cpp";
import { javascript } from "@codemirror/lang-javascript";
import { java } from "@codemirror/lang-java";
import { rust } from "@codemirror/lang-rust";
import { go } from "@codemirror/lang-go";
import { php } from "@codemirror/lang-php";
import { shell } from "@codemirror/legacy-modes/mode/shell";
import { ruby } from "@codemirror/legacy-modes/mode/ruby";
import { lua } from "@codemirror/legacy-modes/mode/lua";
import { perl } from "@codemirror/legacy-modes/mode/perl";
import { haskell } from "@codemirror/legacy-modes/mode/haskell";
import { clojure } from "@codemirror/legacy-modes/mode/clojure";
import { commonLisp } from "@codemirror/legacy-modes/mode/commonlisp";
import { scheme } from "@codemirror/legacy-modes/mode/scheme";
import { erlang } from "@codemirror/legacy-modes/mode/erlang";
import { fortran } from "@codemirror/legacy-modes/mode/fortran";
import { pascal } from "@codemirror/legacy-modes/mode/pascal";
import { cobol } from "@codemirror/legacy-modes/mode/cobol";
import { d } from "@codemirror/legacy-modes/mode/d";
import { tcl } from "@codemirror/legacy-modes/mode/tcl";
import { r } from "@codemirror/legacy-modes/mode/r";
import { sqlite } from "@codemirror/legacy-modes/mode/sql";
import { octave } from "@codemirror/legacy-modes/mode/octave";
import { crystal } from "@codemirror/legacy-modes/mode/crystal";
import { oCaml, sml } from "@codemirror/legacy-modes/mode/mllike";
import { verilog } from "@codemirror/legacy-modes/mode/verilog";
import { brainfuck } from "@codemirror/legacy-modes/mode/brainfuck";
import { forth } from "@codemirror/legacy-modes/mode/forth";
import { gas } from "@codemirror/legacy-modes/mode/gas";
import { haxe } from "@codemirror/legacy-modes/mode/haxe";
import { coffeeScript } from "@codemirror/legacy-modes/mode/coffeescript";
import { vb } from "@codemirror/legacy-modes/mode/vb";
import { csharp, kotlin, scala, objectiveC } from "@codemirror/legacy-modes/mode/clike";
import { groovy } from "@codemirror/legacy-modes/mode/groovy";

const legacy = (mode) => () => StreamLanguage.define(mode);

const SUPPORT = {
  python: python,
  javascript: javascript,
  typescript: () => javascript({ typescript: true }),
  c: cpp,
  "c++": cpp,
  java: java,
  rust: rust,
  go: go,
  php: php,
  bash: legacy(shell),
  dash: legacy(shell),
  zsh: legacy(shell),
  ksh: legacy(shell),
  fish: legacy(shell),
  ruby: legacy(ruby),
  lua: legacy(lua),
  perl: legacy(perl),
  raku: legacy(perl),
  haskell: legacy(haskell),
  clojure: legacy(clojure),
  lisp: legacy(commonLisp),
  emacs: legacy(commonLisp),
  newlisp: legacy(commonLisp),
  picolisp: legacy(commonLisp),
  scheme: legacy(scheme),
  racket: legacy(scheme),
  erlang: legacy(erlang),
  fortran: legacy(fortran),
  pascal: legacy(pascal),
  cobol: legacy(cobol),
  d: legacy(d),
  tcl: legacy(tcl),
  rscript: legacy(r),
  sqlite3: legacy(sqlite),
  octave: legacy(octave),
  crystal: legacy(crystal),
  ocaml: legacy(oCaml),
  sml: legacy(sml),
  iverilog: legacy(verilog),
  brainfuck: legacy(brainfuck),
  forth: legacy(forth),
  nasm: legacy(gas),
  haxe: legacy(haxe),
  coffeescript: legacy(coffeeScript),
  yabasic: legacy(vb),
  csharp: legacy(csharp),
  kotlin: legacy(kotlin),
  scala: legacy(scala),
  "objective-c": legacy(objectiveC),
  groovy: legacy(groovy),
};

/** The CodeMirror extension that highlights ``name``, or [] for plain text. */
export function highlighting(name) {
  const make = SUPPORT[name];
  return make ? make() : [];
}
