class Main {
    static function main() {
        var total = 0;
        var input = Sys.stdin().readAll().toString();
        for (tok in ~/\s+/g.split(input))
            if (tok != "") total += Std.parseInt(tok);
        for (arg in Sys.args())
            total += Std.parseInt(arg);
        Sys.println(total);
    }
}
