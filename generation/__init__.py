"""Generation: sample trained models into MIDI, draw piano rolls, judge samples with MusPy descriptors."""
