"""The audio modality: the tones world, soundscapes of sound events, audio backends, mixing, the
DCASE / JAMS / frame-map writers and the audio Dataset."""
