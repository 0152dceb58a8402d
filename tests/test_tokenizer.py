import json

import pytest

from tokenizer import CharTokenizer, GPT2Tokenizer, get_tokenizer


def test_gpt2_ids_from_the_published_vocabulary():
    tok = GPT2Tokenizer()
    # ids as OpenAI's encoder and Hugging Face's GPT2Tokenizer give them
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.encode(" Hello world") == [18435, 995]
    assert tok.eot_id == 50256 and tok.vocab_size == 50257 and tok.pad_id != tok.eot_id


@pytest.mark.parametrize("text", ["### Human: What is 2+2?\n### Assistant: 4", "naïve café ✓ 日本語", "  spaces\t\ttabs\n\n"])
def test_gpt2_round_trip(text):
    tok = GPT2Tokenizer()
    assert tok.decode(tok.encode(text)) == text


def test_end_of_text_in_user_text_is_not_the_special_token():
    tok = GPT2Tokenizer()
    assert tok.eot_id not in tok.encode("<|endoftext|>")


def test_char_tokenizer_round_trip_and_specials(tmp_path):
    tok = CharTokenizer.from_texts(["hello", "world!"])
    ids = tok.encode("hello world!".replace(" ", ""))
    assert tok.decode(ids) == "helloworld!"
    assert min(ids) >= 2 and tok.pad_id == 0 and tok.eot_id == 1
    assert tok.decode(ids + [tok.eot_id, tok.pad_id, tok.pad_id]) == "helloworld!<end>"
    path = str(tmp_path / "vocab.json")
    tok.save(path)
    again = get_tokenizer(path)
    assert again.encode("world") == tok.encode("world") and again.vocab_size == tok.vocab_size == 10
    assert get_tokenizer(str(tmp_path)).vocab_size == 10  # a directory holding vocab.json
    with pytest.raises(ValueError, match="character 'z' is not in the char vocabulary"):
        tok.encode("z")


def test_unknown_tokenizer_names_are_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown tokenizer 'gpt5'"):
        get_tokenizer("gpt5")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"type": "bpe"}))
    with pytest.raises(ValueError, match="not a char vocabulary"):
        get_tokenizer(str(bad))


def test_spec_rebuilds_the_same_tokenizer_without_its_file(tmp_path):
    tok = CharTokenizer.from_texts(["hello world"])
    again = get_tokenizer(tok.spec)  # what a checkpoint stores: the vocabulary, not the path of vocab.json
    assert again.encode("hello") == tok.encode("hello") and again.spec == tok.spec
    assert get_tokenizer(GPT2Tokenizer.spec).encode("Hello world") == [15496, 995]
