"""Live updates on `tape.live.*`, by side: the messages and their schema (`messages`), the building
side persist uses (`building`), and the joining side clients use (`joining`)."""
