//! The search tokenizer: words are runs of letters and digits, as in tantivy's default, except
//! that Chinese, Japanese and Korean script (Han, Hiragana, Katakana, Hangul, Bopomofo), which
//! is written without spaces between words, gives one token per character. Positions run on
//! from token to token, so a query word of several such characters becomes a phrase query that
//! matches exactly where those characters stand together. Tokens are lowercased and tokens
//! longer than 40 bytes dropped, as tantivy's default analyzer does.

use std::str::CharIndices;

use tantivy::tokenizer::{
    LowerCaser, RemoveLongFilter, TextAnalyzer, Token, TokenStream, Tokenizer,
};

/// The name the index's text fields give their tokenizer.
pub(crate) const NAME: &str = "words_cjk_chars";

/// Longest token kept, in bytes (tantivy's default).
const TOKEN_MAX_BYTES: usize = 40;

/// The analyzer registered under [`NAME`].
pub(crate) fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(WordsAndCjkChars::default())
        .filter(RemoveLongFilter::limit(TOKEN_MAX_BYTES))
        .filter(LowerCaser)
        .build()
}

/// Whether `c` belongs to a script written without spaces between words (or, for Hangul,
/// with particles glued to words), and so is indexed character by character.
fn is_cjk(c: char) -> bool {
    matches!(u32::from(c),
        0x1100..=0x11FF         // Hangul Jamo
        | 0x2E80..=0x2FDF       // CJK and Kangxi radicals
        | 0x3005..=0x3007       // 々 〆 〇
        | 0x3021..=0x3029       // Hangzhou numerals
        | 0x3031..=0x3035       // kana repeat marks
        | 0x3040..=0x30FF       // Hiragana, Katakana
        | 0x3100..=0x312F       // Bopomofo
        | 0x3130..=0x318F       // Hangul compatibility Jamo
        | 0x31A0..=0x31BF       // Bopomofo extended
        | 0x31F0..=0x31FF       // Katakana phonetic extensions
        | 0x3400..=0x4DBF       // CJK extension A
        | 0x4E00..=0x9FFF       // CJK unified ideographs
        | 0xA960..=0xA97F       // Hangul Jamo extended A
        | 0xAC00..=0xD7FF       // Hangul syllables, Jamo extended B
        | 0xF900..=0xFAFF       // CJK compatibility ideographs
        | 0xFF66..=0xFF9F       // halfwidth Katakana
        | 0xFFA0..=0xFFDC       // halfwidth Hangul
        | 0x1B000..=0x1B16F     // kana supplement and extended
        | 0x20000..=0x323AF     // CJK extensions B to H, compatibility supplement
    )
}

/// Splits on everything that is not a letter or digit; CJK characters stand alone.
#[derive(Clone, Default)]
pub(crate) struct WordsAndCjkChars {
    token: Token,
}

/// The token stream of [`WordsAndCjkChars`].
pub(crate) struct WordsAndCjkCharsStream<'a> {
    text: &'a str,
    chars: std::iter::Peekable<CharIndices<'a>>,
    token: &'a mut Token,
}

impl Tokenizer for WordsAndCjkChars {
    type TokenStream<'a> = WordsAndCjkCharsStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> WordsAndCjkCharsStream<'a> {
        self.token.reset();
        WordsAndCjkCharsStream {
            text,
            chars: text.char_indices().peekable(),
            token: &mut self.token,
        }
    }
}

impl TokenStream for WordsAndCjkCharsStream<'_> {
    fn advance(&mut self) -> bool {
        self.token.text.clear();
        self.token.position = self.token.position.wrapping_add(1);
        while let Some((start, c)) = self.chars.next() {
            if !c.is_alphanumeric() {
                continue;
            }
            let mut end = start + c.len_utf8();
            if !is_cjk(c) {
                while let Some(&(at, next)) = self.chars.peek() {
                    if !next.is_alphanumeric() || is_cjk(next) {
                        break;
                    }
                    end = at + next.len_utf8();
                    self.chars.next();
                }
            }
            self.token.offset_from = start;
            self.token.offset_to = end;
            self.token.text.push_str(&self.text[start..end]);
            return true;
        }
        false
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tokens(text: &str) -> Vec<(String, usize)> {
        let mut analyzer = analyzer();
        let mut stream = analyzer.token_stream(text);
        let mut out = Vec::new();
        while let Some(token) = stream.next() {
            out.push((token.text.clone(), token.position));
        }
        out
    }

    fn check(text: &str, expected: &[&str]) {
        let got: Vec<String> = tokens(text).into_iter().map(|(t, _)| t).collect();
        assert_eq!(got, expected, "{text}");
    }

    #[test]
    fn latin_cyrillic_and_greek_words_are_whole_lowercased_words() {
        check(
            "Hello, happy tax-payer!",
            &["hello", "happy", "tax", "payer"],
        );
        check("Совещание по БЮДЖЕТУ", &["совещание", "по", "бюджету"]);
        check("Πρόσκληση σε σύσκεψη", &["πρόσκληση", "σε", "σύσκεψη"]);
        check(
            "Toplantı ertelendi: Çarşamba",
            &["toplantı", "ertelendi", "çarşamba"],
        );
        check("  ", &[]);
    }

    #[test]
    fn cjk_script_gives_one_token_per_character() {
        check("会议通知", &["会", "议", "通", "知"]);
        check("年終尾牙，聚餐", &["年", "終", "尾", "牙", "聚", "餐"]);
        check("打ち合わせ", &["打", "ち", "合", "わ", "せ"]);
        check(
            "パスワード変更",
            &["パ", "ス", "ワ", "ー", "ド", "変", "更"],
        );
        check("주간 업무", &["주", "간", "업", "무"]);
        check(
            "Re: 服务器维护v2计划",
            &["re", "服", "务", "器", "维", "护", "v2", "计", "划"],
        );
    }

    #[test]
    fn positions_are_consecutive() {
        let positions: Vec<usize> = tokens("a 会议 b").into_iter().map(|(_, p)| p).collect();
        assert_eq!(positions, vec![0, 1, 2, 3]);
    }

    proptest! {
        #[test]
        fn tokens_are_nonempty_slices_of_the_text(text in "\\PC{0,80}") {
            let mut tokenizer = WordsAndCjkChars::default();
            let mut stream = tokenizer.token_stream(&text);
            let mut last_end = 0;
            while stream.advance() {
                let token = stream.token();
                prop_assert!(token.offset_from >= last_end);
                prop_assert!(token.offset_from < token.offset_to);
                prop_assert_eq!(&text[token.offset_from..token.offset_to], token.text.as_str());
                prop_assert!(token.text.chars().all(char::is_alphanumeric));
                last_end = token.offset_to;
            }
        }
    }
}
