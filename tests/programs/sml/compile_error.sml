val x : int = "text"
