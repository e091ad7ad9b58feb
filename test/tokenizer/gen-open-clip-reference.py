"""Regenerates test/tokenizer/open-clip-reference.json: ftfy 6.3.1 `fix_text` and open_clip 3.3.0
SimpleTokenizer.encode (code copied below, minus torch) on ftfy's own test-case texts plus random mixes.

  FTFY_SRC=<rspeer/python-ftfy checkout at v6.3.1> FTFY_TESTS=<its tests/ directory (test-cases/*.json)> \
  CLIP_MERGES=<.../fixtures/tokenizer/clip-merges.txt> CASES=<.../fixtures/tokenizer/cases.json> \
  python3 gen-open-clip-reference.py 2 1300 OUT.json
then keep unique texts as {text, fixed, ids} (see the JSON's "_about"). Needs the `regex` package.
"""
import os
import json, random, html, glob, sys, gzip, unicodedata
sys.path.insert(0, os.environ['FTFY_SRC'])
import ftfy, regex as re
import ftfy.bad_codecs
from ftfy import chardata

random.seed(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
N = int(sys.argv[2]) if len(sys.argv) > 2 else 3000

# ---------------- reference open_clip SimpleTokenizer (code copied from open_clip 3.3.0, minus torch)
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~")+1))+list(range(ord("¡"), ord("¬")+1))+list(range(ord("®"), ord("ÿ")+1))
    cs = bs[:]; n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b); cs.append(2**8+n); n += 1
    return dict(zip(bs, [chr(n) for n in cs]))
def get_pairs(word):
    return set(zip(word[:-1], word[1:]))
def basic_clean(text):
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text))
    return text.strip()
def whitespace_clean(text):
    return " ".join(text.split()).strip()
class Tok:
    def __init__(self):
        self.byte_encoder = bytes_to_unicode()
        merges = open(os.environ['CLIP_MERGES'], encoding='utf-8').read().split('\n')
        merges = merges[1:49152-256-2+1]
        merges = [tuple(m.split()) for m in merges]
        vocab = list(bytes_to_unicode().values()); vocab = vocab + [v+'</w>' for v in vocab]
        for m in merges: vocab.append(''.join(m))
        special = ['<start_of_text>', '<end_of_text>']; vocab.extend(special)
        self.encoder = dict(zip(vocab, range(len(vocab))))
        self.bpe_ranks = dict(zip(merges, range(len(merges))))
        self.cache = {t: t for t in special}
        self.pat = re.compile("|".join(special) + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", re.IGNORECASE)
    def bpe(self, token):
        if token in self.cache: return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + '</w>',)
        pairs = get_pairs(word)
        if not pairs: return token+'</w>'
        while True:
            bigram = min(pairs, key=lambda p: self.bpe_ranks.get(p, float('inf')))
            if bigram not in self.bpe_ranks: break
            first, second = bigram; new_word = []; i = 0
            while i < len(word):
                try:
                    j = word.index(first, i); new_word.extend(word[i:j]); i = j
                except Exception:
                    new_word.extend(word[i:]); break
                if word[i] == first and i < len(word)-1 and word[i+1] == second:
                    new_word.append(first+second); i += 2
                else:
                    new_word.append(word[i]); i += 1
            word = tuple(new_word)
            if len(word) == 1: break
            pairs = get_pairs(word)
        word = ' '.join(word); self.cache[token] = word; return word
    def encode(self, text):
        out = []
        text = whitespace_clean(basic_clean(text)).lower()
        for token in re.findall(self.pat, text):
            token = ''.join(self.byte_encoder[b] for b in token.encode('utf-8'))
            out.extend(self.encoder[t] for t in self.bpe(token).split(' '))
        return out
tok = Tok()

# ---------------- corpus
texts = []
for f in [os.path.join(os.environ['FTFY_TESTS'], 'test-cases', '*.json'), os.path.join(os.environ['FTFY_SRC'], 'tests', 'test_cases.json')]:
    for p in glob.glob(f):
        for c in json.load(open(p)):
            texts.append(c['original']); texts.append(c['fixed'])
for c in json.load(open(os.environ['CASES'])):
    texts.append(c['text'])
n_fixed_corpus = len(texts)

words = ("café naïve résumé façade crème brûlée Straße Ångström Øresund Œuvre ΟΔΟΣ σοφία İstanbul "
         "一只猫 猫の写真 고양이 фотография кошки صورة बिल्ली תמונה ภาพแมว “quoted” ‘single’ it’s "
         "€100 £5 ¥ © ® ™ … — – ½ ² µ × ÷ ° ¿ ¡ à á ç ñ ü ö é è ê ß æ ø å ł ś ž č ř ğ ş ı 🐶 🐱 👍🏽 ❤️ 🇫🇷 "
         "a photo of the dog cat car big small red blue COVID-19 don't I'm we've you'd they'll").split()
encs = [e for e in chardata.CHARMAP_ENCODINGS] + ['windows-1252', 'utf-16-le']
ents = ['&amp;', '&amp', '&lt;', '&gt;', '&quot;', '&eacute;', '&EACUTE;', '&Eacute;', '&nbsp;', '&nbsp', '&#39;', '&#x263A;',
        '&#128512;', '&#0;', '&#13;', '&#150;', '&#x110000;', '&#xD800;', '&notit;', '&notin;', '&ampxyz', '&copy', '&copyright',
        '&hellip;', '&mdash;', '&SZLIG;', '&NTILDE;', '&nTILDE;', '&amp;amp;', '&amp;lt;', '&#x1F600', '&#65', '&zwj;', '&;', '&#;', '&#x;',
        '&Jscr;', '&HilbertSpace;', '&checkmark;', '&AMP;', '&NOT;', '&not', '&fjlig;', '&NotNestedLessLess;', '&lt', '&LT', '&rarr;']
specials = ['\x00', '\x07', '\x0b', '\x0c', '\r', '\r\n', '\n', '\t', '\x1b[31m', '\x1b[0m', '\x1b[1;2;3H', '\x85', '\x80', '\x81', '\x9d',
            '\x93', '\xa0', '\xad', '\u200b', '\u200d', '\ufeff', '\u2028', '\u2029', '\u3000', '\u206a', '\ufffc', '\ufffd', '\x1a',
            'ﬁ', 'ﬂ', 'ﬀ', 'ﬃ', 'ﬄ', 'ﬅ', 'ﬆ', 'Ĳ', 'ǆ', 'ＡＢＣ', 'ｶﾀｶﾅ', '１２３', '　', 'e\u0301', 'A\u030a', '<', '>', '<b>',
            '<start_of_text>', '<end_of_text>', '<|endoftext|>', "'s", "'S", "'ſ", 'ſ', 'K', 'Σ', 'ΑΣ', 'ΑΣ.', 'ǅ', 'ﬀi', '\x1c', '\x1f',
            '\u00c3\u00a9', 'Ã ', 'Ã', 'â€œ', 'â€', 'â€™', 'Ã©', 'Â ', 'Â', 'Ã¡', 'Ãƒ', 'Ã\xa0', '\xc3\x20', 'Ð¿', 'Ø§Ù', 'ã\x81\x82',
            'à²', '√±', 'вЂ', 'Ã¶Ã¤Ã¼', 'Ã¢â‚¬â„¢', '\u0130', 'ı', '\u0307', '½', 'Ⅻ', '²', '٣', '𝟘', '\U0001F600', '\U000E0067']

def mojibake(s):
    e = random.choice(encs)
    try:
        b = s.encode('utf-8')
        if random.random() < 0.2 and e.startswith('sloppy'):
            return b.decode(e.replace('sloppy-', ''), errors='replace')
        r = b.decode(e)
        if random.random() < 0.15: r = r.encode('utf-8').decode(e)  # double
        if random.random() < 0.1: r = r.replace('\xa0', ' ')
        return r
    except Exception:
        return s

def piece():
    r = random.random()
    if r < 0.35: return random.choice(words)
    if r < 0.55: return mojibake(' '.join(random.choice(words) for _ in range(random.randint(1, 3))))
    if r < 0.7: return random.choice(ents)
    if r < 0.9: return random.choice(specials)
    return chr(random.choice([random.randint(0x20, 0x7e), random.randint(0x80, 0x2fff), random.randint(0x80, 0xffff), random.randint(0x10000, 0x1ffff)]))

while len(texts) < n_fixed_corpus + N:
    k = random.randint(1, 8)
    sep = random.choice([' ', ' ', '', '\n', '  '])
    t = sep.join(piece() for _ in range(k))
    if any(0xd800 <= ord(c) <= 0xdfff or unicodedata.category(c) == 'Cn' for c in t): continue
    texts.append(t)

out = []
for t in texts:
    try:
        ids = tok.encode(t)
    except Exception as e:
        ids = None
    out.append({'text': t, 'fixed': ftfy.fix_text(t), 'cleaned': whitespace_clean(basic_clean(t)).lower(), 'bpe': ids})
json.dump(out, open(sys.argv[3], 'w'), ensure_ascii=True)
print(len(out), n_fixed_corpus)
