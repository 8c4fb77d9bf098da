// an editor's scratch copy: never compiled
