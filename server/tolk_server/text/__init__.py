"""Pure text work: markup, sentence splitting, language detection, glossaries."""
