//! The guard's checks on pairs that must be refused and pairs that may pass.

use super::check;

fn refused(a: &str, b: &str) {
    assert!(check(a, b).is_err(), "{a:?} vs {b:?} must be refused");
    assert!(check(b, a).is_err(), "{b:?} vs {a:?} must be refused");
}

fn allowed(a: &str, b: &str) {
    assert!(check(a, b).is_ok(), "{a:?} vs {b:?}: {:?}", check(a, b));
    assert!(check(b, a).is_ok(), "{b:?} vs {a:?}: {:?}", check(b, a));
}

#[test]
fn numbers_codes_dates_and_units_must_agree() {
    refused("Track order 48213", "Track order 48231");
    refused("I took 3 tablets", "I took 5 tablets");
    refused("I took three tablets", "I took five tablets");
    refused("Is Python 3.11 supported?", "Is Python 3.12 supported?");
    refused("What does error E404 mean?", "What does error E500 mean?");
    refused("Email bob@example.com the report", "Email bo@example.com the report");
    refused("Open config.yaml", "Open config.json");
    refused("Is the store open on Monday?", "Is the store open on Tuesday?");
    refused("What's the weather today?", "What's the weather tomorrow?");
    refused("How far is 10 km?", "How far is 10 miles?");
    refused("Convert 5 mg to g", "Convert 5 g to mg");
    refused("What is 20 °C in Fahrenheit?", "What is 20 °F in Celsius?");
    allowed("Track order 48,213 please", "please track order 48213");
    allowed("Is 3.0 the same as three?", "is 3 the same as 3?");
}

#[test]
fn negations_antonyms_and_quantifiers_must_agree() {
    refused(
        "Is ibuprofen safe during pregnancy?",
        "Is ibuprofen unsafe during pregnancy?",
    );
    refused(
        "Is ibuprofen safe during pregnancy?",
        "Is ibuprofen not safe during pregnancy?",
    );
    refused("Can I take it with food?", "Can I take it without food?");
    refused("Why can't I log in?", "Why can I log in?");
    refused(
        "How do I enable two-factor authentication?",
        "How do I disable two-factor authentication?",
    );
    refused("Should I take it before meals?", "Should I take it after meals?");
    refused("Which plan is cheapest?", "Which plan is most expensive?");
    refused("How do I increase the heap size?", "How do I decrease the heap size?");
    refused("Delete all rows", "Delete some rows");
    refused(
        "Do I need at least two forms of ID?",
        "Do I need at most two forms of ID?",
    );
    refused("Show the first entry", "Show the last entry");
    allowed("How do I reset my password?", "How can I reset my password?");
    allowed("How do I reset my password?", "How do I reset my passwords?");
    refused(
        "What are the side effects of metformin?",
        "What are the side effects of metoprolol?",
    );
    refused(
        "How do I accept a meeting invite?",
        "How do I decline a meeting invite?",
    );
    allowed(
        "Is coffee safe while breastfeeding?",
        "While breastfeeding, is coffee safe?",
    );
}

#[test]
fn named_entities_must_agree_in_order() {
    refused("What is the capital of France?", "What is the capital of Spain?");
    refused("How do I read a file in Python?", "How do I read a file in Rust?");
    refused("Convert USD to EUR", "Convert EUR to USD");
    refused("Alice owes Bob money", "Bob owes Alice money");
    refused("Deploy it on AWS", "Deploy it on Azure");
    refused("Move $50 from checking to savings", "Move $50 from savings to checking");
    refused("Convert 5 miles to km", "Convert 5 km to miles");
    refused(
        "What notice does an employee give an employer?",
        "What notice does an employer give an employee?",
    );
    allowed(
        "How do I get to the airport from downtown?",
        "How do I get from downtown to the airport?",
    );
    refused("Cheap flights from Paris", "Cheap flights to Paris");
    allowed("What's the capital of France?", "Tell me France's capital.");
    allowed("Explain how DNS works.", "How does DNS work?");
    allowed(
        "Hello! Can you help me write a cover letter?",
        "Can you help me write a cover letter?",
    );
}

#[test]
fn spelling_case_and_phrasing_that_change_nothing_pass() {
    allowed(
        "convert a list to a set in python",
        "Convert a list to a set in Python.",
    );
    allowed("HOW DO I CANCEL MY ORDER", "How do I cancel my order?");
    allowed(
        "How long does shipping take to Canada?",
        "how long does shiping take to canada",
    );
    allowed(
        "Whats the weather like in Lisbon?",
        "What's the weather like in Lisbon?",
    );
    allowed(
        "How do I enable two-factor authentication?",
        "how do i enable two factor authentication",
    );
    allowed("Do we file the report every year?", "Do we file the annual report?");
    allowed("How many minutes do I boil an egg?", "How long do I boil an egg?");
    allowed("Please write a SQL query, thank you so much.", "Write a SQL query.");
    refused(
        "Do we file the report every year?",
        "Do we file the report every month?",
    );
    refused("Boil it for 5 minutes", "Boil it for 5 hours");
    refused("Is metformin safe?", "Is metoprolol safe?");
}
