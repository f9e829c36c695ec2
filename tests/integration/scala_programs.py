"""Scala programs a reused scalac must compile exactly as a cold one does.

Used by ``test_warm_compilers.py``: each entry is a request's files; between
them they cover what scalac 2.11 keeps per compiler (symbols, scopes, caches,
fresh names, type histories) that a warm-up could leave behind.
"""

from __future__ import annotations

from pathlib import Path

BENCH = (Path(__file__).parents[2] / "bench" / "programs" / "main.scala").read_text()

PROGRAMS: dict[str, dict[str, str]] = {
    "hello": {
        "main.scala": (
            'object Main {\n  def main(args: Array[String]): Unit = println("hello")\n}\n'
        ),
    },
    "bench": {
        "main.scala": BENCH,
    },
    "cases": {
        "main.scala": (
            "sealed trait Shape { def area: Double }\n"
            "case class Circle(r: Double) extends Shape { def area = math.Pi * r * r }\n"
            "case class Rect(w: Double, h: Double) extends Shape { def area = w * h }\n"
            "case object Empty extends Shape { def area = 0.0 }\n"
            "object Circle { def unit: Circle = Circle(1) }\n"
            "trait Named\n"
            "case class A(i: Int) extends Named\n"
            "case class B(s: String) extends Named\n"
            "object Main {\n"
            '  def pick(c: Boolean) = if (c) A(1) else B("x")\n'
            '  val both = List(A(1), B("y"))\n'
            "  def describe(s: Shape): String = s match {\n"
            '    case Circle(r) if r > 1 => s"big circle $r"\n'
            '    case c @ Circle(_) => "circle " + c.copy(r = 2).r\n'
            '    case Rect(w, h) => f"rect $w%.1f x $h%.1f"\n'
            '    case Empty => "empty"\n'
            "  }\n"
            "  def main(args: Array[String]): Unit = {\n"
            "    List(Circle(3), Circle.unit, Rect(1, 2), Empty).map(describe).foreach(println)\n"
            "    println(pick(args.isEmpty)); println(both)\n"
            '    val t = (1, "two", 3.0); val (x, y, z) = t; println(s"$x $y $z")\n'
            "  }\n"
            "}\n"
        ),
    },
    # inferred least upper bounds, in public signatures
    "lubs": {
        "main.scala": (
            "trait Tag\n"
            "trait Mark extends Serializable\n"
            "case class P(i: Int) extends Tag with Mark\n"
            "case class Q(s: String) extends Tag\n"
            "class R extends Tag with Mark with Equals { def canEqual(o: Any) = true }\n"
            "object Main {\n"
            '  def a(c: Boolean) = if (c) P(1) else Q("q")\n'
            "  def b(c: Boolean) = if (c) Vector(1) else List(1)\n"
            "  def d(c: Boolean) = if (c) new java.util.ArrayList[Int] else new java.util.LinkedList[Int]\n"
            "  def e(c: Boolean) = if (c) Some(1) else Nil\n"
            "  def f(c: Boolean) = if (c) (1, 2) else Left(3)\n"
            "  def g(c: Boolean) = if (c) new R else P(2)\n"
            "  def h(c: Boolean) = if (c) Set(1) else Map(1 -> 2)\n"
            "  val all = List(a(true), g(false), new R)\n"
            "  def main(args: Array[String]): Unit =\n"
            '    println(List(a(true), b(false), d(true), e(false), f(true), g(false), h(true)).mkString(" ") + all.size)\n'
            "}\n"
        ),
    },
    "closures": {
        "main.scala": (
            "object Main {\n"
            "  def twice(f: Int => Int): Int => Int = f andThen f\n"
            "  def main(args: Array[String]): Unit = {\n"
            "    var counter = 0\n"
            "    val inc = (x: Int) => { counter += 1; x + counter }\n"
            "    val adders = (1 to 3).map(n => (x: Int) => x + n)\n"
            '    println(adders.map(_(10)).mkString(","))\n'
            '    println(twice(inc)(5) + " " + counter)\n'
            '    val words = Seq("b", "a", "c").sortWith((l, r) => l < r)\n'
            '    println(words.foldLeft("")((acc, w) => acc + w.toUpperCase))\n'
            "    def local(k: Int): Int = { def inner(j: Int) = j * k * counter; inner(2) }\n"
            "    println(local(3))\n"
            '    val pf: PartialFunction[Any, String] = { case i: Int => "int " + i; case s: String => s }\n'
            '    println(List(1, "s", 2.0).collect(pf))\n'
            '    new Thread(new Runnable { def run(): Unit = println("anon " + counter) }).run()\n'
            "  }\n"
            "}\n"
        ),
    },
    "implicits": {
        "main.scala": (
            "trait Show[T] { def show(t: T): String }\n"
            "object Show {\n"
            '  implicit val intShow: Show[Int] = new Show[Int] { def show(t: Int) = "i" + t }\n'
            "  implicit def listShow[T](implicit s: Show[T]): Show[List[T]] = new Show[List[T]] {\n"
            '    def show(l: List[T]) = l.map(s.show).mkString("[", ",", "]")\n'
            "  }\n"
            "}\n"
            "object Syntax {\n"
            "  implicit class RichInt(val n: Int) extends AnyVal { def squared: Int = n * n }\n"
            "  implicit def strToInt(s: String): Int = s.length\n"
            "}\n"
            "object Main {\n"
            "  import Syntax._\n"
            "  def display[T: Show](t: T): String = implicitly[Show[T]].show(t)\n"
            "  def len(i: Int) = i\n"
            "  def main(args: Array[String]): Unit = {\n"
            "    println(display(List(1, 2, 3)))\n"
            '    println(7.squared + len("abcd"))\n'
            "    implicit val ord: Ordering[String] = Ordering.by(_.length)\n"
            '    println(List("ccc", "a", "bb").sorted)\n'
            "  }\n"
            "}\n"
        ),
    },
    "traits": {
        "main.scala": (
            "trait Counter { var count = 0; val step: Int = 2; def tick(): Unit = count += step }\n"
            "trait Logging { self: Counter => val log = scala.collection.mutable.ArrayBuffer[String](); def note(s: String) = log += s + count }\n"
            "abstract class Base(val name: String) { def greet: String }\n"
            'class Impl extends Base("impl") with Counter with Logging {\n'
            "  override val step = 3\n"
            '  lazy val heavy = { note("lazy"); 42 }\n'
            '  def greet = s"hi $name"\n'
            "}\n"
            "object Main {\n"
            "  def main(args: Array[String]): Unit = {\n"
            '    val i = new Impl; i.tick(); i.tick(); i.note("n"); println(i.heavy + " " + i.count + " " + i.log + " " + i.greet)\n'
            "  }\n"
            "}\n"
        ),
    },
    "packages": {
        "main.scala": (
            "package com.example.app\n"
            "\n"
            "import scala.collection.mutable\n"
            "\n"
            "object Outer {\n"
            "  object Inner { object Deep { val x = 3; def f = x * 2 } }\n"
            "  class Nested { def g = Inner.Deep.f }\n"
            "}\n"
            "\n"
            'package object util { def helper = "pkg-obj" }\n'
            "\n"
            "object Main {\n"
            "  def main(args: Array[String]): Unit = {\n"
            '    val m = mutable.Map("a" -> 1)\n'
            '    println(Outer.Inner.Deep.f + new Outer.Nested().g + m("a"))\n'
            "    println(util.helper)\n"
            "  }\n"
            "}\n"
        ),
    },
    "app": {
        "main.scala": (
            "object Main extends App {\n"
            "  val xs = args.toList\n"
            '  println("args " + xs.size)\n'
            '  for (i <- 1 to 3; j <- 1 to i if (i + j) % 2 == 0) println(s"$i,$j")\n'
            "}\n"
        ),
    },
    # specialization, value classes, an Enumeration
    "special": {
        "main.scala": (
            "class Cell[@specialized(Int, Double) T](val v: T) { def map[@specialized(Int) U](f: T => U) = new Cell(f(v)) }\n"
            "class Meters(val v: Double) extends AnyVal { def +(o: Meters) = new Meters(v + o.v) }\n"
            "object Color extends Enumeration { val Red, Green = Value }\n"
            "object Main {\n"
            "  def main(args: Array[String]): Unit = {\n"
            '    println(new Cell(3).map(_ * 2).v + " " + new Cell(1.5).map(_.toInt).v)\n'
            '    println((new Meters(1) + new Meters(2)).v + " " + Color.values.toList)\n'
            "    val arr = Array.tabulate(5)(i => i * i); println(arr.sum)\n"
            "  }\n"
            "}\n"
        ),
    },
    "misc": {
        "main.scala": (
            "import java.util.{ArrayList => JList}\n"
            "import scala.collection.JavaConverters._\n"
            "import scala.util.{Try, Success, Failure}\n"
            "object Main {\n"
            "  def byName(x: => Int): Int = x + x\n"
            "  @annotation.tailrec def loop(n: Int, acc: Long): Long = if (n == 0) acc else loop(n - 1, acc * n)\n"
            "  def main(args: Array[String]): Unit = {\n"
            '    val jl = new JList[String](); jl.add("j"); println(jl.asScala.toList)\n'
            '    println(byName { println("eval"); 2 })\n'
            "    println(loop(10, 1))\n"
            "    println(Try(1 / 0) match { case Success(v) => v; case Failure(e) => e.getClass.getSimpleName })\n"
            "    val opt = for { a <- Some(1); b <- Option(2) } yield a + b\n"
            "    println(opt.getOrElse(0))\n"
            '    try throw new RuntimeException("x") catch { case e: RuntimeException => println(e.getMessage) } finally println("fin")\n'
            "    val s = Stream.from(1).filter(_ % 3 == 0).take(3).toList; println(s)\n"
            '    println(Map(1 -> "a").map { case (k, v) => v * k })\n'
            "  }\n"
            "}\n"
        ),
    },
    # two files
    "multi": {
        "main.scala": (
            "object Main {\n"
            '  def main(args: Array[String]): Unit = println(Util.twice(21) + " " + new Box(1).map(_ + 1))\n'
            "}\n"
        ),
        "util.scala": (
            "object Util { def twice(i: Int) = i * 2 }\n"
            "case class Box[T](t: T) { def map[U](f: T => U) = Box(f(t)) }\n"
        ),
    },
    "error": {
        "main.scala": (
            "object Main {\n"
            "  def main(args: Array[String]): Unit = {\n"
            '    val x: Int = "text"\n'
            "    println(y)\n"
            "    List(1).foo\n"
            "  }\n"
            "}\n"
        ),
    },
    "warning": {
        "main.scala": (
            "sealed trait T\n"
            "case object X extends T\n"
            "case object Y extends T\n"
            "object Main {\n"
            '  @deprecated("old", "1.0") def old = 1\n'
            "  def f(t: T) = t match { case X => 1 }\n"
            "  def main(args: Array[String]): Unit = {\n"
            "    println(old + f(X))\n"
            '    1 == "a"\n'
            "    val unused = { 3; 4 }\n"
            "    println(unused)\n"
            "  }\n"
            "}\n"
        ),
    },
    # what only the warm-up's own program defines (a `Main`)
    "other": {
        "main.scala": (
            "object Other {\n  def main(args: Array[String]): Unit = Main.main(args)\n}\n"
        ),
    },
    # the warm-up's package, by name: unknown to a request
    "names": {
        "main.scala": (
            "object Main {\n  def main(args: Array[String]): Unit = tvm_warmup.Main.main(args)\n}\n"
        ),
    },
    # a request's own package of that name
    "ownpkg": {
        "main.scala": (
            "package tvm_warmup\n"
            "object Main {\n"
            '  def main(a: Array[String]): Unit = println(List("w", "x").mkString(","))\n'
            "}\n"
        ),
    },
}
