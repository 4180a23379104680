//! Random readable display names: "Adjective Animal" with the animal's emoji,
//! e.g. "Brave Otter" 🦦. 48 adjectives × 40 animals = 1920 combinations:
//! names are for people to tell each other apart, not identifiers.

const ADJECTIVES: &[&str] = &[
    "Agile", "Bold", "Brave", "Bright", "Calm", "Cheerful", "Clever", "Cosmic", "Curious", "Daring", "Eager", "Fancy",
    "Fearless", "Friendly", "Gentle", "Glad", "Golden", "Happy", "Honest", "Humble", "Jolly", "Keen", "Kind", "Lively",
    "Lucky", "Mellow", "Merry", "Mighty", "Nimble", "Noble", "Patient", "Playful", "Polite", "Proud", "Quick", "Quiet",
    "Rapid", "Shiny", "Silent", "Smart", "Snappy", "Sunny", "Swift", "Tidy", "Witty", "Wise", "Zany", "Zesty",
];

const ANIMALS: &[(&str, &str)] = &[
    ("Badger", "🦡"),
    ("Bat", "🦇"),
    ("Bear", "🐻"),
    ("Beaver", "🦫"),
    ("Bee", "🐝"),
    ("Bison", "🦬"),
    ("Butterfly", "🦋"),
    ("Camel", "🐫"),
    ("Cat", "🐱"),
    ("Crab", "🦀"),
    ("Deer", "🦌"),
    ("Dodo", "🦤"),
    ("Dog", "🐶"),
    ("Dolphin", "🐬"),
    ("Eagle", "🦅"),
    ("Elephant", "🐘"),
    ("Flamingo", "🦩"),
    ("Fox", "🦊"),
    ("Frog", "🐸"),
    ("Giraffe", "🦒"),
    ("Hedgehog", "🦔"),
    ("Kangaroo", "🦘"),
    ("Koala", "🐨"),
    ("Lion", "🦁"),
    ("Llama", "🦙"),
    ("Octopus", "🐙"),
    ("Otter", "🦦"),
    ("Owl", "🦉"),
    ("Panda", "🐼"),
    ("Parrot", "🦜"),
    ("Peacock", "🦚"),
    ("Penguin", "🐧"),
    ("Rabbit", "🐰"),
    ("Raccoon", "🦝"),
    ("Seal", "🦭"),
    ("Sloth", "🦥"),
    ("Swan", "🦢"),
    ("Tiger", "🐯"),
    ("Turtle", "🐢"),
    ("Whale", "🐳"),
];

/// A name and its emoji, chosen by two random numbers.
pub fn pick(adjective: u32, animal: u32) -> (String, &'static str) {
    let adjective = ADJECTIVES[adjective as usize % ADJECTIVES.len()];
    let (animal, emoji) = ANIMALS[animal as usize % ANIMALS.len()];
    (format!("{adjective} {animal}"), emoji)
}

/// A random name and emoji from the host's random source.
pub fn generate() -> Result<(String, &'static str), getrandom::Error> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)?;
    let a = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let b = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    Ok(pick(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_are_readable_and_fit_the_columns() {
        for a in 0..ADJECTIVES.len() as u32 {
            for b in 0..ANIMALS.len() as u32 {
                let (name, emoji) = pick(a, b);
                assert!(name.chars().count() <= 64, "{name}");
                assert!(emoji.chars().count() <= 16 && !emoji.is_empty());
                assert!(name.split(' ').count() == 2 && name.chars().all(|c| c.is_ascii_alphabetic() || c == ' '));
            }
        }
        assert_eq!(pick(2, 26), ("Brave Otter".to_string(), "🦦"));
        assert_eq!(pick(u32::MAX, u32::MAX), pick(u32::MAX % 48, u32::MAX % 40));
    }

    #[test]
    fn lists_have_no_duplicates() {
        let mut a = ADJECTIVES.to_vec();
        a.sort();
        a.dedup();
        assert_eq!(a.len(), ADJECTIVES.len());
        let mut n: Vec<_> = ANIMALS.iter().map(|x| x.0).collect();
        n.sort();
        n.dedup();
        assert_eq!(n.len(), ANIMALS.len());
        assert_eq!(ADJECTIVES.len(), 48);
    }

    #[test]
    fn generate_works() {
        let (name, emoji) = generate().unwrap();
        assert!(name.contains(' ') && !emoji.is_empty());
    }
}
