"""Sharing on the Hugging Face Hub: the cards (cards.py) and the pushes (push.py) of a trained
size or a prepared dataset. Used by scripts only; imports data/ and tokenizer/, never training/."""
