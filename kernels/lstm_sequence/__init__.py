"""An LSTM over a whole sequence: forward and backward through time as one op each."""
