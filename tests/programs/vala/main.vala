int main (string[] args) {
    int64 total = 0;
    string? line;
    while ((line = stdin.read_line ()) != null) {
        foreach (var tok in line.split (" ")) {
            if (tok.strip () != "") total += int64.parse (tok.strip ());
        }
    }
    for (int i = 1; i < args.length; i++) total += int64.parse (args[i]);
    print ("%" + int64.FORMAT + "\n", total);
    return 0;
}
