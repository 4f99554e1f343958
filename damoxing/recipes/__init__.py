"""Recipes: the top layer, whole runs made of library calls. Nothing inside the library imports them.

pretrain.py    config -> tokenizer -> data -> model -> Trainer.fit()      (`damoxing pretrain`)
finetune.py    config -> model -> new head -> method -> Trainer -> save   (`damoxing finetune`)
evaluate.py    a saved folder + a file -> metrics and a report, or predictions (`evaluate`, `predict`)
translate.py   an encoder-decoder folder + texts or a file -> translations  (`damoxing translate`)
quickstart.py  the whole life of a model on bundled data                  (`damoxing quickstart [--lang zh]`)
lesson.py      pretrained vs the same model from scratch vs char n-grams, same split and seeds (quickstart, bench)
"""
