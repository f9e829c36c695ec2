object Main {
  def main(args: Array[String]): Unit = {
    val input = scala.io.Source.stdin.mkString
    val fromStdin = input.split("\\s+").filter(_.nonEmpty).map(_.toLong).sum
    val fromArgs = args.map(_.toLong).sum
    println(fromStdin + fromArgs)
  }
}
