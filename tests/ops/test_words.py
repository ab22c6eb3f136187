from llm_mesh.words import count


def test_counts_read_as_words() -> None:
    assert [count(n, "file") for n in (0, 1, 2)] == ["0 files", "1 file", "2 files"]
    assert count(1, "value is", "values are") == "1 value is"
    assert count(3, "value is", "values are") == "3 values are"
