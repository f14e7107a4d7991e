"""python examples/quickstart/make_dataset.py

Generate the quickstart dataset: customer-support conversations for "Lumen Cloud", a fictional
hosting and storage provider. Every assistant answer follows one fixed house format, so that a tiny
model fine-tuned for a couple of minutes shows a visible change in style:

    Hi there, thanks for contacting Lumen Cloud support!
    Issue: <one short sentence restating the customer's problem>
    Steps:
    1. <step>
    2. <step>
    Reference: LC-<4 digits>
    — The Lumen Cloud Team

The data is written by hand-crafted generation: per-topic question templates, issue sentences and
ordered step pools, combined with a fixed seed. Held-out eval questions come from separate templates
(and three topics that never appear in training), so no eval question is seen during training.

Standard library only. Writes support_train.jsonl and support_eval.jsonl next to this file
(or into --out-dir) and checks every row before writing.
"""

import argparse
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

SEED = 20240611
N_TRAIN = 320
N_EVAL = 40  # one row per eval template
MIN_WORDS, MAX_WORDS = 35, 80  # hard limits checked on every answer
TARGET_MIN, TARGET_MAX = 40, 70  # generation retries until the answer lands in this band

GREETING = "Hi there, thanks for contacting Lumen Cloud support!"
SIGN_OFF = "— The Lumen Cloud Team"

ANSWER_RE = re.compile(
    r"\AHi there, thanks for contacting Lumen Cloud support!\n"
    r"Issue: [A-Z][^\n]*[.!]\n"
    r"Steps:\n"
    r"(?:[1-4]\. [A-Z][^\n]*[.!]\n){2,4}"
    r"Reference: LC-\d{4}\n"
    r"— The Lumen Cloud Team\Z"
)


@dataclass
class Topic:
    """One support topic.

    ``train_q`` and ``eval_q`` are disjoint lists of question templates. An entry is either a template
    string or a ``(template, issue)`` pair whose issue sentence overrides the topic's ``issues``.
    ``steps`` is an ordered list of stages, each a tuple of alternative phrasings; the stages in
    ``required`` are always used and further stages are sampled, keeping the order. ``slots`` fill
    ``{name}`` placeholders; ``eval_slots`` replaces them for eval rows where given.
    """

    name: str
    issues: list[str]
    steps: list[tuple[str, ...]]
    train_q: list[str | tuple[str, str]] = field(default_factory=list)
    eval_q: list[str | tuple[str, str]] = field(default_factory=list)
    slots: dict[str, list[str]] = field(default_factory=dict)
    eval_slots: dict[str, list[str]] = field(default_factory=dict)
    required: tuple[int, ...] = (0,)


TOPICS: list[Topic] = [
    Topic(
        name="password_reset",
        slots={"service": ["Lumen Mail", "Lumen Drive", "the Lumen Cloud console"]},
        eval_slots={"service": ["Lumen Backup", "Lumen Compute"]},
        train_q=[
            (
                "I forgot my password for {service} and the reset email never shows up.",
                "Your password reset for {service} isn't working, so you can't sign in.",
            ),
            "how do i reset the password for {service}",
            "Can't log in to {service}, I think I forgot my password. What do I do?",
            (
                "I've tried resetting my password three times and still can't get into {service}.",
                "Your password reset for {service} isn't working, so you can't sign in.",
            ),
            (
                "The password reset link says it has expired. I need to get into {service} today.",
                "Your password reset for {service} isn't working, so you can't sign in.",
            ),
            "forgot pw for {service}, pls help",
            "What's the process for changing a forgotten password on {service}?",
        ],
        eval_q=[
            "My password manager lost my {service} login and I honestly have no clue what the password was. "
            "How can I set a new one?",
        ],
        issues=[
            "You can't sign in to {service} because you forgot your password.",
            "You need to reset the password for {service} to get back into your account.",
        ],
        steps=[
            (
                'Open lumencloud.example/reset and click "Forgot password".',
                "Go to lumencloud.example/reset and enter your account email address.",
            ),
            (
                "Check your inbox and spam folder for the reset email from Lumen Cloud.",
                "Look for the reset email in your inbox, including the spam folder.",
            ),
            (
                "Use the link within 30 minutes, because older links expire.",
                "Open the newest reset link only, since earlier links stop working.",
            ),
            (
                "Choose a new password with at least 12 characters.",
                "Set a new password you haven't used on Lumen Cloud before.",
            ),
            (
                "Sign in again and update the saved password on your other devices.",
                "Log in with the new password and update any apps that store it.",
            ),
        ],
    ),
    Topic(
        name="two_factor_lost_device",
        required=(0, 1),
        slots={"device": ["phone", "iPhone", "Android phone", "work phone"]},
        eval_slots={"device": ["tablet"]},
        train_q=[
            (
                "I got a new {device} and now I can't get my two-factor codes for Lumen Cloud.",
                "Your two-factor codes stayed on your old phone, so you can't sign in.",
            ),
            "Lost my {device} with the authenticator app on it. How do I get back into my account?",
            "2FA codes are on my old {device} which is broken. Locked out completely.",
            "old {device} is gone, how do i set up lumen 2fa again",
            "My {device} was stolen and it had my Lumen Cloud authenticator on it. What now?",
            "Dropped my {device} in the lake, no way to get the 2FA code. Help?",
        ],
        eval_q=[
            "The authenticator on my {device} got wiped during a factory reset, so there are no sign-in codes "
            "anymore. Can you help me get access again?",
        ],
        issues=[
            "You can't get two-factor codes because your old {device} is no longer available.",
            "You're locked out because your two-factor codes were on your old {device}.",
        ],
        steps=[
            (
                'On the sign-in page, choose "Use a recovery code" and enter a saved code.',
                "Try one of the recovery codes you saved when you turned on two-factor.",
            ),
            (
                'With no recovery codes, click "Lost access to my device" and confirm our email.',
                'Without recovery codes, choose "Lost access to my device" and follow the email we send.',
            ),
            (
                "Once signed in, open Security settings and remove the old {device}.",
                "After you're in, remove the old {device} under Security > Two-factor.",
            ),
            (
                "Scan the new QR code with your authenticator app and save fresh recovery codes.",
                "Set up two-factor on your new device and store the new recovery codes safely.",
            ),
        ],
    ),
    Topic(
        name="two_factor_codes_rejected",
        train_q=[
            "My two-factor code keeps saying invalid even though I type it right.",
            "2fa code rejected every single time. what is going on",
            "The authenticator app gives me a code but Lumen Cloud says it's wrong.",
            "Why does the login page reject my 6-digit verification code?",
            "I'm entering the code from my authenticator app and it says 'code expired' instantly.",
        ],
        eval_q=[
            "Every verification number my authenticator shows gets refused at the Lumen Cloud login screen, "
            "even when I enter it within a few seconds.",
        ],
        issues=[
            "Your two-factor codes are being rejected when you sign in.",
            "Lumen Cloud says your two-factor code is invalid or expired.",
        ],
        steps=[
            (
                "Set your phone's date and time to update automatically.",
                "Make sure your phone clock is set to automatic network time.",
            ),
            (
                "Check that you're using the Lumen Cloud entry in your authenticator app.",
                "Confirm the code comes from the Lumen Cloud account, not another entry.",
            ),
            (
                "Wait for a fresh code to appear and enter it right away.",
                "Enter the code as soon as it refreshes, without the space in the middle.",
            ),
            (
                "If it still fails, sign in with one of your saved recovery codes.",
                "Use a recovery code to sign in if the app codes keep failing.",
            ),
        ],
    ),
    Topic(
        name="invoice_download",
        slots={"month": ["January", "March", "May", "August", "October"]},
        eval_slots={"month": ["June", "December"]},
        train_q=[
            "Where can I download my invoice for {month}?",
            "I need a PDF copy of the {month} invoice for our accountant.",
            "Our finance team is asking for the {month} invoice and I can't find it anywhere in the dashboard.",
            "invoice for {month}?? where",
            "Could you send me the Lumen Cloud invoice from {month}? I can't locate it.",
            "Hey, is there a way to get a copy of my {month} bill?",
        ],
        eval_q=[
            "Our bookkeeper says the {month} statement from Lumen Cloud never reached their inbox. Can I grab a "
            "copy myself?",
        ],
        issues=[
            "You need a copy of your {month} invoice.",
            "You can't find the invoice for {month} in your account.",
        ],
        steps=[
            (
                "Sign in to console.lumencloud.example and open Billing > Invoices.",
                "In the Lumen Cloud console, go to Billing > Invoices.",
            ),
            (
                'Filter by {month} and click "Download PDF" next to the invoice.',
                'Find the {month} entry in the list and choose "Download PDF".',
            ),
            (
                'Use "Download all" to get a ZIP of every invoice in a date range.',
                "Select several months at once to export them together as a ZIP file.",
            ),
            (
                "Add your accountant's address under Billing > Invoice recipients for future invoices.",
                "Add a billing contact so future invoices are emailed automatically.",
            ),
        ],
    ),
    Topic(
        name="invoice_details",
        train_q=[
            "Our invoices still show our old company name. How do we change it?",
            "I need to add our VAT number to the invoices, where do I do that?",
            "The billing address on my invoice is wrong, can it be corrected?",
            "invoice has wrong company address, accountant won't accept it",
            "Can you put our tax ID on the invoice please? It's missing.",
        ],
        eval_q=[
            (
                "We moved offices last month and the purchase order number has to appear on each bill too. "
                "Can both be updated?",
                "Your invoices need your new address and a purchase order number.",
            ),
        ],
        issues=[
            "The company details on your invoices are wrong or missing.",
            "You need to update the business details shown on your invoices.",
        ],
        steps=[
            (
                "Open Billing > Billing details in the Lumen Cloud console.",
                "In the console, go to Billing > Billing details.",
            ),
            (
                "Update the company name, address and tax ID fields, then click Save.",
                "Enter the correct company name, address or VAT number and save.",
            ),
            (
                'For past invoices, open each one and click "Reissue with current details".',
                'Click "Reissue" on older invoices to regenerate them with the new details.',
            ),
            (
                "All future invoices will use the updated details automatically.",
                "New invoices pick up the saved details from the next billing date.",
            ),
        ],
    ),
    Topic(
        name="refund_double_charge",
        required=(0, 2),
        slots={"amount": ["$12", "$29", "$49", "$120"]},
        eval_slots={"amount": ["$74"]},
        train_q=[
            "I was charged {amount} twice this month. Please refund one of them.",
            "Why did you bill my card twice for {amount}??",
            "double charge of {amount} on my statement, fix it",
            "Hello, my bank shows two identical Lumen Cloud payments of {amount}. Is that a mistake?",
            "You took {amount} from my account two times today. I want my money back.",
        ],
        eval_q=[
            "My credit card statement lists the same Lumen Cloud subscription fee of {amount} on back-to-back "
            "days. Is one of those going to be returned?",
        ],
        issues=[
            "You were charged {amount} twice for the same period.",
            "You see a duplicate {amount} charge from Lumen Cloud.",
        ],
        steps=[
            (
                "Open Billing > Payments to check whether both {amount} charges show as paid.",
                "Go to Billing > Payments and compare the two {amount} charges.",
            ),
            (
                "A pending charge is only a card check and drops off within 5 business days.",
                "If one says Pending, it's a temporary hold that your bank releases automatically.",
            ),
            (
                'If both are paid, click "Request refund" next to the duplicate.',
                'For two settled charges, choose "Request refund" on the second one.',
            ),
            (
                "Refunds reach your card within 5 to 10 business days.",
                "You'll get a confirmation email, and the money returns in 5 to 10 business days.",
            ),
        ],
    ),
    Topic(
        name="refund_request",
        required=(0, 1),
        slots={"plan": ["Team", "Business"]},
        eval_slots={"plan": ["Business"]},
        train_q=[
            "I upgraded to the {plan} plan by mistake. Can I get a refund?",
            "We don't need the {plan} plan anymore, can we get our money back for this month?",
            "refund for {plan} upgrade pls, clicked the wrong button",
            "I accidentally renewed the {plan} plan yearly instead of monthly. Refund?",
            "How do refunds work? Paid for {plan} yesterday and it's not what we need.",
        ],
        eval_q=[
            "A colleague switched us to the {plan} tier without asking anyone and we'd like that payment "
            "reversed, please.",
        ],
        issues=[
            "You'd like a refund for your recent {plan} plan charge.",
            "You want your money back for the {plan} plan payment.",
        ],
        steps=[
            (
                "Go to Billing > Payments and select the {plan} plan charge.",
                "In the console, open Billing > Payments and find the {plan} charge.",
            ),
            (
                'Click "Request refund" and pick the reason that fits best.',
                'Choose "Request refund" and add a short note about what happened.',
            ),
            (
                "Refunds are available for plan charges made within the last 14 days.",
                "Charges from the last 14 days qualify for a full refund.",
            ),
            (
                "Switch back to your previous plan under Billing > Plans to avoid the next charge.",
                "Change the plan back in Billing > Plans so it doesn't renew.",
            ),
        ],
    ),
    Topic(
        name="upgrade_plan",
        required=(0, 1),
        slots={"plan": ["Team", "Business"]},
        eval_slots={"plan": ["Business"]},
        train_q=[
            "How do I upgrade to the {plan} plan?",
            "We want to move our account to {plan}. Will we lose any data?",
            "upgrade to {plan}, how",
            "Our team is growing and we need the {plan} plan. What's the process?",
            "Is it possible to switch to {plan} in the middle of the billing month?",
            "Can I try the {plan} plan features? Thinking about upgrading.",
        ],
        eval_q=[
            "Management approved more budget, so we'd like the extra seats and storage that come with {plan}. "
            "What happens to our current subscription if we switch?",
        ],
        issues=[
            "You want to upgrade your account to the {plan} plan.",
            "You'd like to move to the {plan} plan without losing anything.",
        ],
        steps=[
            (
                "Open Billing > Plans in the Lumen Cloud console.",
                "Sign in to the console and go to Billing > Plans.",
            ),
            (
                'Select {plan} and click "Review changes" to see the new price.',
                'Choose the {plan} plan and check the summary before clicking "Confirm".',
            ),
            (
                "You only pay the prorated difference for the rest of this month.",
                "The price difference is prorated, so you're charged only for the days left.",
            ),
            (
                "All files, mailboxes and settings stay exactly as they are.",
                "Your data and settings carry over, and the new limits apply immediately.",
            ),
        ],
    ),
    Topic(
        name="drive_storage_full",
        train_q=[
            "Lumen Drive says my storage is full but I deleted a bunch of files.",
            "Can't upload anything to Lumen Drive, it says out of space.",
            "drive full again. what is eating all my space",
            "Why is my Lumen Drive at 100% when my folders are small?",
            "I keep getting 'Storage limit reached' when saving to Lumen Drive.",
            "Our team Drive ran out of storage this morning and nobody can upload. Urgent.",
        ],
        eval_q=[
            "Uploads to my Drive stopped because the quota is apparently used up, yet I only keep a handful of "
            "documents there. How is that possible?",
            "Every time I drag a video into Lumen Drive it fails and says I've hit my limit. What's using all "
            "the room?",
        ],
        issues=[
            "Your Lumen Drive storage is full, so new uploads fail.",
            "Lumen Drive shows no space left and you can't upload files.",
        ],
        steps=[
            (
                "Open Lumen Drive > Storage to see which folders use the most space.",
                "Check the Storage page in Lumen Drive to find the largest files.",
            ),
            (
                "Empty the Trash, because deleted files still count for 30 days.",
                "Deleted files stay in Trash and count toward storage until you empty it.",
            ),
            (
                "Remove old file versions under Settings > Version history.",
                "Clear older versions of large files in Settings > Version history.",
            ),
            (
                "Add more storage or upgrade your plan under Billing > Plans.",
                "If you still need room, buy an extra storage pack in Billing.",
            ),
        ],
    ),
    Topic(
        name="mailbox_full",
        train_q=[
            "My Lumen Mail mailbox is full and people say their emails bounce.",
            "mailbox over quota, can't receive mail",
            "I get a warning that my Lumen Mail storage is almost full. What should I clean up?",
            "Clients tell me their messages come back saying my inbox is full. Please help!",
            "How can I free up space in Lumen Mail? It's at 99%.",
        ],
        eval_q=[
            "Lumen Mail shows a red bar at the top about quota and new messages aren't arriving. What can I "
            "safely delete?",
        ],
        issues=[
            "Your Lumen Mail mailbox is running out of space.",
            "Your Lumen Mail storage is full or close to its limit.",
        ],
        steps=[
            (
                "Empty the Deleted Items and Junk folders in Lumen Mail.",
                "Clear out the Deleted Items and Junk folders first.",
            ),
            (
                'Search for "has:attachment larger:10MB" and delete or save large messages.',
                "Move big attachments to Lumen Drive and delete the original emails.",
            ),
            (
                "Turn on auto-archive in Settings > Mailbox to move old mail automatically.",
                "Enable auto-archive so mail older than a year moves out of your inbox.",
            ),
            (
                "If you need more room, increase the mailbox size under Billing > Plans.",
                "Upgrade your mailbox size in Billing if you can't delete enough.",
            ),
        ],
    ),
    Topic(
        name="drive_sync_error",
        slots={"code": ["SYNC-102", "SYNC-207", "SYNC-311"], "os": ["Windows", "Mac"]},
        eval_slots={"code": ["SYNC-415"], "os": ["Linux"]},
        train_q=[
            "The Lumen Drive app on my {os} laptop is stuck on syncing with error {code}.",
            "getting {code} in the drive desktop app on {os}, nothing syncs",
            "Files aren't syncing between my {os} computer and Lumen Drive. The app shows {code}.",
            "Lumen Drive sync has been broken for two days ({code}). I'm on {os}.",
            "What does error {code} mean? Drive won't sync on my {os} machine.",
            "sync error {code} again!! {os}. fix this please",
        ],
        eval_q=[
            "After moving a large project folder, the Lumen Drive client on my {os} workstation paused itself "
            "and shows {code}. How do I get it syncing again?",
        ],
        issues=[
            "Lumen Drive on your {os} computer won't sync and shows error {code}.",
            "The Lumen Drive desktop app on {os} is stuck with error {code}.",
        ],
        steps=[
            (
                "Click the Lumen Drive icon, choose Pause sync, then Resume sync.",
                "Pause and resume syncing from the Lumen Drive icon in the menu bar or tray.",
            ),
            (
                "Make sure your {os} computer has at least 2 GB of free disk space.",
                "Check that your disk isn't full, since {code} often means no local space.",
            ),
            (
                "Rename files with characters like : or ? in their names.",
                "Look for file names with unsupported characters and rename them.",
            ),
            (
                "Update the Lumen Drive app to the latest version for {os}.",
                "Install the newest Lumen Drive release for {os} from the Downloads page.",
            ),
            (
                "Sign out of the app and sign back in to rebuild the sync index.",
                "If it still fails, sign out of Lumen Drive and sign in again.",
            ),
        ],
    ),
    Topic(
        name="email_bounce",
        slots={"recipient": ["example.org", "partner.example.net", "clients.example.com"]},
        eval_slots={"recipient": ["agency.example.org"]},
        train_q=[
            "Emails I send from Lumen Mail to {recipient} bounce back.",
            "Why do my messages to people at {recipient} keep getting returned?",
            "all my mail to {recipient} bounces since yesterday",
            "Customers at {recipient} say they never get our emails, and I get a delivery failure notice.",
            "Getting 'message rejected' bounces when emailing {recipient} from Lumen Mail. Please advise.",
        ],
        eval_q=[
            "Outgoing messages to anyone at {recipient} come back with an 'undeliverable' report within a "
            "minute. Other domains seem fine. What should I check?",
        ],
        issues=[
            "Emails you send from Lumen Mail to {recipient} are bouncing.",
            "Your messages to {recipient} are being returned as undeliverable.",
        ],
        steps=[
            (
                "Read the bounce message and check the recipient address for typos.",
                "Open the bounce notice and confirm the address at {recipient} is spelled correctly.",
            ),
            (
                "Verify your SPF and DKIM records under Domains > Email authentication.",
                "Check that SPF and DKIM show green in Domains > Email authentication.",
            ),
            (
                "Make sure you're under the daily sending limit for your plan.",
                "Check Mail > Sending activity to confirm you haven't hit the daily limit.",
            ),
            (
                "Forward the full bounce message to support@lumencloud.example so we can trace it.",
                "If it continues, send us the bounce message and we'll check the mail logs.",
            ),
        ],
    ),
    Topic(
        name="dns_domain",
        required=(0, 1),
        slots={"domain": ["shop.example.com", "example.org", "bakery.example.net", "myteam.example.com"]},
        eval_slots={"domain": ["studio.example.org"]},
        train_q=[
            "My domain {domain} isn't pointing to my Lumen Compute server.",
            "{domain} still shows the old site after I changed DNS. Why?",
            "dns for {domain} not working",
            "I added an A record for {domain} but the website doesn't load. What did I miss?",
            "How long does it take for {domain} to start working after I update DNS on Lumen Cloud?",
            "Visitors going to {domain} get an error page. I think the DNS is wrong.",
        ],
        eval_q=[
            "I bought {domain} through you last week and pointed it at my new server, but browsers still can't "
            "resolve it. Could something be misconfigured?",
        ],
        issues=[
            "Your domain {domain} isn't reaching your Lumen Cloud server.",
            "The DNS for {domain} doesn't point to the right place yet.",
        ],
        steps=[
            (
                "Open Domains > {domain} > DNS records in the Lumen Cloud console.",
                "In the console, go to Domains, select {domain} and open DNS records.",
            ),
            (
                "Make sure the A record points to your Lumen Compute public IP.",
                "Check that the A record value matches the IP shown on your server page.",
            ),
            (
                "Delete any old A or CNAME records for the same name that conflict.",
                "Remove duplicate records left over from your previous host.",
            ),
            (
                "Allow up to 24 hours for DNS changes to spread worldwide.",
                "DNS updates can take a few hours, so test again later with the DNS checker.",
            ),
        ],
    ),
    Topic(
        name="domain_transfer",
        required=(0, 1),
        slots={"domain": ["example.org", "shop.example.com", "bakery.example.net"]},
        eval_slots={"domain": ["studio.example.org"]},
        train_q=[
            "How do I transfer {domain} to Lumen Cloud from my current registrar?",
            "I want to move {domain} over to you guys. Steps?",
            "transfer {domain} to lumen",
            "My domain transfer for {domain} has been pending for a week. Is something wrong?",
            "Can I bring {domain} to Lumen Cloud without my website going down?",
        ],
        eval_q=[
            "We'd like to consolidate everything with Lumen Cloud, including {domain}, which is currently "
            "registered somewhere else. What do I need from the old provider?",
        ],
        issues=[
            "You want to transfer {domain} to Lumen Cloud.",
            "You're moving {domain} to Lumen Cloud from another registrar.",
        ],
        steps=[
            (
                "Unlock {domain} at your current registrar and request the transfer auth code.",
                "At your old registrar, remove the transfer lock and get the auth code.",
            ),
            (
                "In the console, open Domains > Transfer in and enter {domain} with the auth code.",
                'Go to Domains > "Transfer in", type {domain} and paste the auth code.',
            ),
            (
                "Approve the confirmation email sent to the domain's admin contact.",
                "Click the approval link in the email we send to the domain contact.",
            ),
            (
                "Transfers usually finish within 5 to 7 days, and your DNS keeps working meanwhile.",
                "Expect up to 7 days, and keep your existing DNS records to avoid downtime.",
            ),
        ],
    ),
    Topic(
        name="api_401",
        train_q=[
            "Every call to the Lumen Cloud API returns 401 Unauthorized.",
            "api says 401 even with a brand new key",
            "My script worked yesterday but now the API rejects my key. Why?",
            "Getting 'invalid credentials' from the Lumen Compute API. I'm sure the key is right.",
            "Why would the API return 401 for some endpoints but not others?",
        ],
        eval_q=[
            "Our deployment pipeline started failing with an authentication error whenever it talks to your "
            "REST endpoints. Nothing changed on our side as far as I know.",
        ],
        issues=[
            "The Lumen Cloud API is rejecting your requests with 401 Unauthorized.",
            "Your API key isn't being accepted by the Lumen Cloud API.",
        ],
        steps=[
            (
                'Send the key in the header as "Authorization: Bearer <your key>".',
                'Check that the request uses the header "Authorization: Bearer" plus your key.',
            ),
            (
                "Open Console > API keys and confirm the key is active, not revoked or expired.",
                "Check in Console > API keys that the key hasn't expired or been revoked.",
            ),
            (
                "Make sure the key's scopes include the product you're calling.",
                "Confirm the key has the right scope, such as compute:write, for that endpoint.",
            ),
            (
                "If unsure, create a new key and replace the old one in your script.",
                "Generate a fresh key and update it wherever your code reads it.",
            ),
        ],
    ),
    Topic(
        name="api_key_create",
        slots={"use": ["a CI pipeline", "a backup script", "a monitoring dashboard", "a Terraform setup"]},
        eval_slots={"use": ["a mobile app backend"]},
        train_q=[
            "How do I create an API key for {use}?",
            "Need an API token for {use}, where do I get one?",
            "api key for {use}?",
            "What permissions should the API key for {use} have, and how do I make one?",
            "Can I make a key that only works for {use} and nothing else?",
        ],
        eval_q=[
            "I'm wiring up {use} and need credentials for your API that can't touch billing. Where do I "
            "generate something like that?",
        ],
        issues=[
            "You need an API key for {use}.",
            "You want to create a limited API key for {use}.",
        ],
        steps=[
            (
                'Open Console > API keys and click "Create key".',
                'In the Lumen Cloud console, go to API keys and choose "Create key".',
            ),
            (
                "Give it a clear name, such as the tool it's for, and pick only the scopes it needs.",
                "Select the smallest set of scopes that {use} needs.",
            ),
            (
                "Set an expiry date so the key rotates regularly.",
                "Choose an expiry of 90 days or less for better security.",
            ),
            (
                "Copy the key now and store it in a secret manager, because it's shown only once.",
                "Save the key somewhere safe right away, since we can't show it again.",
            ),
        ],
    ),
    Topic(
        name="api_key_leaked",
        required=(0, 1),
        train_q=[
            "I accidentally pushed my Lumen Cloud API key to a public repo. What do I do?",
            "leaked api key!! help",
            "Someone on my team pasted our API key in a public forum post. How do we lock it down?",
            "Our API key was in a screenshot we shared. Should we be worried?",
            "I think my API key was exposed, there are requests I don't recognize.",
        ],
        eval_q=[
            "A contractor who just left still has a copy of our production API credentials. How do we make "
            "sure they can't use them anymore?",
        ],
        issues=[
            "Your Lumen Cloud API key may have been exposed to others.",
            "An API key for your account was leaked and needs replacing.",
        ],
        steps=[
            (
                "Revoke the exposed key right away in Console > API keys.",
                'Go to Console > API keys and click "Revoke" on the affected key.',
            ),
            (
                "Create a new key with the same scopes and update your apps.",
                "Generate a replacement key and deploy it wherever the old one was used.",
            ),
            (
                "Review Console > Audit log for requests you don't recognize.",
                "Check the audit log for any unfamiliar activity with that key.",
            ),
            (
                "Remove the key from the code history and store keys in a secret manager.",
                "Keep future keys out of code by loading them from environment variables.",
            ),
        ],
    ),
    Topic(
        name="vm_slow",
        slots={"vm": ["web-01", "app-server", "db-02", "worker-3"]},
        eval_slots={"vm": ["build-runner"]},
        train_q=[
            "My Lumen Compute VM {vm} has been really slow since this morning.",
            "{vm} is crawling, pages take 10 seconds to load",
            "Why is my server {vm} so sluggish? Nothing changed.",
            "The instance {vm} keeps freezing for a few seconds at a time. Is there an issue on your side?",
            "performance on {vm} is terrible today",
            "Our Lumen Compute machine {vm} got slower after we added more users. What can we do?",
        ],
        eval_q=[
            "Jobs on {vm} that used to finish in five minutes now take half an hour, and the machine feels "
            "unresponsive over SSH. Where should I start?",
        ],
        issues=[
            "Your Lumen Compute VM {vm} is running slowly.",
            "The server {vm} has become slow and unresponsive.",
        ],
        steps=[
            (
                "Open Compute > {vm} > Monitoring and check the CPU and memory graphs.",
                "Look at the Monitoring tab for {vm} to see CPU, memory and disk usage.",
            ),
            (
                "If CPU is near 100%, run top on the server to find the busy process.",
                "Use top or htop on {vm} to spot the process using the most resources.",
            ),
            (
                "Check disk usage, because a full disk slows everything down.",
                "Run df -h and free up space if the disk is over 90% full.",
            ),
            (
                "Resize {vm} to a larger size under Compute > {vm} > Resize.",
                "If usage stays high, move {vm} to a bigger plan with more CPU and memory.",
            ),
            (
                "Check status.lumencloud.example for any ongoing incident in your region.",
                "Look at our status page to rule out a regional incident.",
            ),
        ],
    ),
    Topic(
        name="vm_ssh",
        slots={"vm": ["web-01", "app-server", "db-02", "worker-3"]},
        eval_slots={"vm": ["build-runner"]},
        train_q=[
            "I can't SSH into my Lumen Compute server {vm}. Connection times out.",
            "ssh to {vm} says permission denied (publickey)",
            "Locked out of {vm} after I changed some firewall settings.",
            "Why can't I connect to {vm} over SSH anymore? It worked last week.",
            "{vm} refuses ssh connections, urgent, production is down",
        ],
        eval_q=[
            "Since rebuilding {vm} from a snapshot, my terminal just hangs when I try to log in remotely. "
            "What might be blocking it?",
        ],
        issues=[
            "You can't connect to your Lumen Compute server {vm} over SSH.",
            "SSH access to {vm} is failing.",
        ],
        steps=[
            (
                "Check in Compute > {vm} that the server status is Running.",
                "Confirm that {vm} shows as Running in the Lumen Cloud console.",
            ),
            (
                "Make sure the firewall allows port 22 from your current IP address.",
                "Open Networking > Firewall and allow inbound port 22 from your IP.",
            ),
            (
                "Use the SSH key you added at creation and the right username.",
                "Confirm you're connecting with the correct username and private key.",
            ),
            (
                "Open the web console from the {vm} page to check the SSH service directly.",
                "Use the browser console on the {vm} page to restart the SSH service.",
            ),
        ],
    ),
    Topic(
        name="backup_restore",
        required=(0, 1),
        slots={
            "item": [
                "a deleted folder",
                "an overwritten spreadsheet",
                "yesterday's database dump",
                "last week's website files",
            ]
        },
        eval_slots={"item": ["the marketing photo album"]},
        train_q=[
            "How do I restore {item} from Lumen Backup?",
            "Need to get back {item}. It should be in Lumen Backup.",
            "restore {item} from backup asap",
            "Is it possible to recover {item}? We have Lumen Backup turned on.",
            "I panicked and messed things up. Can Lumen Backup bring back {item}?",
        ],
        eval_q=[
            "Someone cleaned up a shared drive and {item} went with it. Our nightly snapshots run through your "
            "service. Can I pull it back without affecting anything else?",
        ],
        issues=[
            "You need to restore {item} from Lumen Backup.",
            "You want to recover {item} using your backups.",
        ],
        steps=[
            (
                "Open Lumen Backup > Restore in the console.",
                "In the Lumen Cloud console, go to Lumen Backup and choose Restore.",
            ),
            (
                "Pick a snapshot dated before the data was changed or deleted.",
                "Choose the most recent snapshot from before the problem happened.",
            ),
            (
                "Browse the snapshot and select only the files you need.",
                "Select the specific folder or files to restore instead of everything.",
            ),
            (
                "Restore to a new location first so current files aren't overwritten.",
                'Choose "Restore to new folder" to keep your current data safe.',
            ),
        ],
    ),
    Topic(
        name="backup_failed",
        slots={"job": ["nightly-files", "db-backup", "office-laptops"]},
        eval_slots={"job": ["weekly-archive"]},
        train_q=[
            "My Lumen Backup job {job} failed last night.",
            "backup {job} keeps failing, red X every day",
            "Why did the scheduled backup {job} not run this week?",
            "Lumen Backup emailed me that {job} failed. What does that mean?",
            "The {job} backup has been failing since Monday. I'm worried we have no backups.",
        ],
        eval_q=[
            "The dashboard shows {job} as 'partially completed' for three runs in a row. Are my files "
            "actually protected?",
        ],
        issues=[
            "Your Lumen Backup job {job} is failing.",
            "The scheduled backup {job} didn't complete successfully.",
        ],
        steps=[
            (
                "Open Lumen Backup > Jobs > {job} and read the latest log.",
                "Check the run log for {job} under Lumen Backup > Jobs.",
            ),
            (
                "Make sure the backup agent is running and updated on the source machine.",
                "Confirm the Lumen Backup agent is online and on the latest version.",
            ),
            (
                "Check that the backup destination still has free space.",
                "Free up space or raise the backup quota if the destination is full.",
            ),
            (
                'Click "Run now" to test the job once the issue is fixed.',
                "Start {job} manually and watch it finish before the next schedule.",
            ),
        ],
    ),
    Topic(
        name="cancel_account",
        required=(0, 1),
        train_q=[
            "How do I cancel my Lumen Cloud account?",
            "I want to close my account and stop all payments.",
            "cancel subscription pls",
            "We're shutting down our small business. What happens to our data if we cancel?",
            "Please cancel my plan. I've tried in the dashboard and can't find the button.",
            "Honestly done with this. How do I delete everything and leave?",
        ],
        eval_q=[
            "Our nonprofit is winding down at the end of the quarter, so we want to end the service cleanly. "
            "What should we do first?",
        ],
        issues=[
            "You want to cancel your Lumen Cloud account.",
            "You'd like to close your account and stop future charges.",
        ],
        steps=[
            (
                "Download any files, mailboxes and backups you want to keep.",
                "Export your data first, since it can't be recovered after deletion.",
            ),
            (
                'Go to Billing > Plans and click "Cancel subscription".',
                'In the console, open Billing > Plans and choose "Cancel subscription".',
            ),
            (
                "Confirm the cancellation from the email we send you.",
                "Click the confirmation link in the email to finish cancelling.",
            ),
            (
                "You won't be charged again, and data is deleted after 30 days.",
                "Your data stays available for 30 days, then it's permanently removed.",
            ),
        ],
    ),
    Topic(
        name="add_teammate",
        required=(0, 2),
        slots={"role": ["admin", "billing", "member", "read-only"]},
        eval_slots={"role": ["member"]},
        train_q=[
            "How do I add a new teammate to our Lumen Cloud account as {role}?",
            "Need to give a coworker {role} access. How?",
            "add user with {role} role",
            "We hired someone new. Can I invite them as {role} without sharing my password?",
            "Where's the invite button? I want to add a colleague with {role} permissions.",
        ],
        eval_q=[
            "A new intern starts Monday and should get {role} rights on our workspace. What's the cleanest "
            "way to set that up?",
        ],
        issues=[
            "You want to add a teammate with the {role} role.",
            "You need to invite a colleague to your account with {role} access.",
        ],
        steps=[
            (
                'Open Console > Team and click "Invite member".',
                'In the Lumen Cloud console, go to Team and choose "Invite member".',
            ),
            (
                "Enter their work email, for example name@example.com.",
                "Type your colleague's work email address.",
            ),
            (
                "Select the {role} role and send the invitation.",
                "Choose {role} from the role list, then click Send invite.",
            ),
            (
                "They have 7 days to accept, and the seat appears on your next invoice.",
                "Once they accept, the new seat is added to your next invoice.",
            ),
        ],
    ),
    Topic(
        name="payment_failed",
        required=(0, 1),
        train_q=[
            "My card payment to Lumen Cloud was declined. What now?",
            "payment failed email, but my card is fine",
            "Your system says my payment didn't go through. Will my services be shut off?",
            "I got a notice that the invoice is overdue because the card was declined.",
            "How do I update my credit card? The old one expired and the payment failed.",
        ],
        eval_q=[
            "My bank issued me a replacement card and now there's an unpaid balance warning on the dashboard. "
            "How do I settle it?",
        ],
        issues=[
            "Your last payment to Lumen Cloud was declined.",
            "A card payment failed and your invoice is unpaid.",
        ],
        steps=[
            (
                "Go to Billing > Payment methods and check the card's expiry date.",
                "Open Billing > Payment methods to confirm your card details are current.",
            ),
            (
                "Add a new card and set it as the default payment method.",
                'Add your updated card and mark it as "Default".',
            ),
            (
                'Open the unpaid invoice and click "Retry payment".',
                'Click "Pay now" on the overdue invoice in Billing > Invoices.',
            ),
            (
                "Your services keep running during the 7-day grace period.",
                "Nothing is suspended for 7 days, so there's time to fix it.",
            ),
        ],
    ),
    Topic(
        name="mail_setup",
        required=(0, 1),
        slots={"client": ["Outlook", "Thunderbird", "the iOS Mail app", "Apple Mail"]},
        eval_slots={"client": ["a desktop mail program"]},
        train_q=[
            "How do I set up Lumen Mail in {client}?",
            "What are the IMAP and SMTP settings for Lumen Mail? Using {client}.",
            "lumen mail in {client} won't connect",
            "I can read email in {client} but sending fails. My account is Lumen Mail.",
            "Could you walk me through adding my Lumen Mail account to {client}?",
        ],
        eval_q=[
            "I'd rather not use webmail. Which server names and ports does Lumen Mail need so I can hook it up "
            "to {client}?",
        ],
        issues=[
            "You want Lumen Mail working properly in {client}.",
            "You need the correct settings to use Lumen Mail in {client}.",
        ],
        steps=[
            (
                "For incoming mail, use imap.lumencloud.example on port 993 with SSL.",
                "Set the IMAP server to imap.lumencloud.example, port 993, SSL on.",
            ),
            (
                "For sending, use smtp.lumencloud.example on port 587 with STARTTLS.",
                "Set the SMTP server to smtp.lumencloud.example, port 587, STARTTLS.",
            ),
            (
                "Use your full email address as the username for both servers.",
                "Enter your full address, like you@example.com, as the username.",
            ),
            (
                "If two-factor is on, create an app password under Security and use it instead.",
                "With two-factor enabled, use an app password from Security settings.",
            ),
        ],
    ),
    Topic(
        name="account_locked",
        train_q=[
            "My Lumen Cloud account got locked after too many login attempts.",
            "account locked?? I only tried a few times",
            "It says 'Account temporarily locked'. How long do I have to wait?",
            "I think someone tried to break into my account, it's locked now.",
            "Locked out of the console. Need access for a client demo in an hour!",
        ],
        eval_q=[
            "The sign-in page tells me access is suspended for security reasons after a handful of failed "
            "tries. How do I get unblocked?",
        ],
        issues=[
            "Your Lumen Cloud account is locked after failed sign-in attempts.",
            "You can't sign in because your account was temporarily locked.",
        ],
        steps=[
            (
                "Wait 15 minutes, because the lock lifts automatically.",
                "The lock clears by itself after 15 minutes, so wait before retrying.",
            ),
            (
                "If you're unsure of your password, reset it at lumencloud.example/reset.",
                "Reset your password instead of guessing, to avoid another lock.",
            ),
            (
                'Use the "Unlock my account" link in the security email we sent you.',
                "Check your inbox for our security alert and follow its unlock link.",
            ),
            (
                "After signing in, review Security > Recent activity and turn on two-factor.",
                "Check recent sign-ins under Security and enable two-factor if it's off.",
            ),
        ],
    ),
]

# Topics used only for the held-out eval set: the tuned model has never seen these issues.
EVAL_ONLY_TOPICS: list[Topic] = [
    Topic(
        name="ssl_certificate",
        required=(0, 2),
        slots={"domain": ["studio.example.org", "portal.example.net", "docs.example.com"]},
        eval_q=[
            "The HTTPS certificate for {domain} expired and browsers show a warning. Didn't it renew?",
            "Visitors get 'connection not private' on {domain}. Is the SSL broken?",
            "ssl cert for {domain} was never issued, still says pending",
            "How do I get a free certificate on my custom domain {domain} hosted with you?",
            "Our padlock icon vanished on {domain} overnight. Can you check the certificate?",
        ],
        issues=[
            "The SSL certificate for {domain} isn't valid or hasn't been issued.",
            "Your domain {domain} has a certificate problem, so HTTPS fails.",
        ],
        steps=[
            (
                "Open Domains > {domain} > SSL in the Lumen Cloud console.",
                "In the console, go to Domains, select {domain} and open the SSL tab.",
            ),
            (
                "Make sure the domain's A record points to your Lumen Cloud server.",
                "Confirm {domain} resolves to your Lumen Cloud IP, or the certificate can't issue.",
            ),
            (
                'Click "Reissue certificate" and wait about 15 minutes.',
                'Choose "Reissue" and allow up to 15 minutes for the new certificate.',
            ),
            (
                "Remove any CAA record that blocks our certificate authority.",
                "Check for a CAA DNS record that doesn't allow Lumen Cloud certificates.",
            ),
        ],
    ),
    Topic(
        name="share_link",
        slots={"who": ["an outside partner", "a client", "an auditor"]},
        eval_q=[
            "I shared a Lumen Drive folder with {who} but the link says 'access denied'.",
            "The share link I sent to {who} stopped working after a week. Why?",
            (
                "How can I let {who} download one file from Lumen Drive without giving them an account?",
                "You want to share a Lumen Drive file with {who} who has no account.",
            ),
            "The shared Drive link works for {who}, but they can't see any files in it.",
        ],
        issues=[
            "A Lumen Drive share link isn't working for {who}.",
            "You need to share Lumen Drive files with {who}.",
        ],
        steps=[
            (
                "Open the file or folder in Lumen Drive and click Share.",
                "In Lumen Drive, select the item and choose Share.",
            ),
            (
                'Set link access to "Anyone with the link" instead of "Team only".',
                'Change the link setting to "Anyone with the link" so no account is needed.',
            ),
            (
                "Check the link's expiry date and extend it if it has passed.",
                "Links expire after 7 days by default, so set a later date.",
            ),
            (
                "Ask your admin to allow external sharing under Team > Sharing policy.",
                "If sharing is blocked, an admin can enable it in the sharing policy.",
            ),
        ],
    ),
    Topic(
        name="data_export",
        eval_q=[
            "Can I download a full copy of all my data stored with Lumen Cloud?",
            "Our compliance officer wants an export of everything you hold for our account. How?",
            "We're migrating away next quarter and need all our files and mail in a portable format.",
            "export all data from lumen cloud",
        ],
        issues=[
            "You want a full export of your Lumen Cloud data.",
            "You need a copy of all the data stored in your account.",
        ],
        steps=[
            (
                "Open Console > Account > Export data.",
                'In the Lumen Cloud console, go to Account and choose "Export data".',
            ),
            (
                "Select the products to include, such as Drive, Mail and Backup.",
                "Tick the services you want in the export.",
            ),
            (
                "We email you a download link within 24 hours.",
                "You'll receive a secure download link by email, usually within a day.",
            ),
            (
                "The link stays valid for 7 days, so download the archive promptly.",
                "Download the archive within 7 days, before the link expires.",
            ),
        ],
    ),
]

TONE_WEIGHTS = {"neutral": 40, "polite": 25, "frustrated": 20, "casual": 15}
POLITE_OPENERS = ["Hello,", "Hi,", "Hi team,", "Good morning,", "Hello Lumen support,", "Hi there,"]
POLITE_CLOSERS = ["Thanks in advance!", "Thank you.", "Appreciate the help.", "Thanks so much.", "Many thanks!"]
FRUSTRATED_OPENERS = [
    "This is getting ridiculous.",
    "I'm really annoyed right now.",
    "Second time writing about this.",
    "Not happy.",
    "Ugh.",
]
FRUSTRATED_CLOSERS = [
    "Please fix this ASAP.",
    "I need this sorted today.",
    "This is really frustrating.",
    "Why is this so hard?",
    "I'm paying for this service!",
]


def add_typo(text: str, rng: random.Random) -> str:
    """Swap two inner letters of one lowercase word (an occasional, realistic typo)."""
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha() and w.islower()]
    rng.shuffle(candidates)
    for i in candidates:
        w = words[i]
        j = rng.randrange(1, len(w) - 2)
        if w[j] != w[j + 1]:
            words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
            return " ".join(words)
    return text


KEEP_CAPITAL = {"I", "I'm", "I've", "I'd", "Lumen", "SSL", "2FA"}


def lower_first(text: str) -> str:
    """Lower-case the first letter unless the first word is a name or "I"."""
    first = text.split(" ", 1)[0]
    return text if first in KEEP_CAPITAL else text[0].lower() + text[1:]


def with_closer(text: str, closer: str) -> str:
    return f"{text} {closer}" if text[-1] in ".?!" else f"{text}. {closer}"


def style_question(core: str, rng: random.Random) -> str:
    """Wrap a core question in a tone (opener/closer/casing) and sometimes add a typo."""
    tone = rng.choices(list(TONE_WEIGHTS), weights=list(TONE_WEIGHTS.values()))[0]
    text = core
    if tone == "polite":
        text = f"{rng.choice(POLITE_OPENERS)} {lower_first(text)}"
        if rng.random() < 0.7:
            text = with_closer(text, rng.choice(POLITE_CLOSERS))
    elif tone == "frustrated":
        if rng.random() < 0.6:
            text = f"{rng.choice(FRUSTRATED_OPENERS)} {text}"
        if rng.random() < 0.7:
            text = with_closer(text, rng.choice(FRUSTRATED_CLOSERS))
    elif tone == "casual":
        text = lower_first(text)
        if rng.random() < 0.5:
            text = text.rstrip(".?!")
    if rng.random() < 0.12:
        text = add_typo(text, rng)
    return text


def fill(template: str, values: dict[str, str]) -> str:
    return template.format(**values)


def build_answer(topic: Topic, values: dict[str, str], issue_override: str | None, rng: random.Random, ref: int) -> str:
    """Assemble one house-format answer, retrying the step choice until its length is in the target band."""
    issue = fill(issue_override or rng.choice(topic.issues), values)
    for _ in range(100):
        n_steps = rng.choices([2, 3, 4], weights=[2, 5, 3])[0]
        n_steps = min(max(n_steps, len(topic.required)), len(topic.steps))
        optional = [i for i in range(len(topic.steps)) if i not in topic.required]
        picked = sorted([*topic.required, *rng.sample(optional, n_steps - len(topic.required))])
        chosen = [topic.steps[i] for i in picked]
        step_lines = [f"{k}. {fill(rng.choice(alts), values)}" for k, alts in enumerate(chosen, 1)]
        answer = "\n".join([GREETING, f"Issue: {issue}", "Steps:", *step_lines, f"Reference: LC-{ref:04d}", SIGN_OFF])
        if TARGET_MIN <= len(answer.split()) <= TARGET_MAX:
            return answer
    raise RuntimeError(f"could not fit an answer for {topic.name} into {TARGET_MIN}-{TARGET_MAX} words")


def pick_values(slots: dict[str, list[str]], rng: random.Random) -> dict[str, str]:
    return {name: rng.choice(options) for name, options in slots.items()}


def unpack(entry: str | tuple[str, str]) -> tuple[str, str | None]:
    return (entry, None) if isinstance(entry, str) else entry


class RefNumbers:
    """Distinct 4-digit reference numbers drawn from the shared generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[int] = set()

    def next(self) -> int:
        while True:
            ref = self.rng.randint(1000, 9999)
            if ref not in self.used:
                self.used.add(ref)
                return ref


def row(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def make_train(rng: random.Random, refs: RefNumbers) -> tuple[list[dict], set[str]]:
    """Spread N_TRAIN rows evenly over TOPICS, cycling through each topic's train templates."""
    rows: list[dict] = []
    seen: set[str] = set()
    cores: set[str] = set()
    base, extra = divmod(N_TRAIN, len(TOPICS))
    for t_idx, topic in enumerate(TOPICS):
        count = base + (1 if t_idx < extra else 0)
        for k in range(count):
            template, issue_override = unpack(topic.train_q[k % len(topic.train_q)])
            for _ in range(200):
                values = pick_values(topic.slots, rng)
                core = fill(template, values)
                question = style_question(core, rng)
                if question.lower() not in seen:
                    break
            else:
                raise RuntimeError(f"could not make a unique question for {topic.name}")
            seen.add(question.lower())
            cores.add(core.lower())
            rows.append(row(question, build_answer(topic, values, issue_override, rng, refs.next())))
    rng.shuffle(rows)
    return rows, cores


def make_eval(rng: random.Random, refs: RefNumbers) -> tuple[list[dict], set[str]]:
    """One row per eval template: held-out wordings of the train topics plus the eval-only topics."""
    rows: list[dict] = []
    cores: set[str] = set()
    for topic in TOPICS + EVAL_ONLY_TOPICS:
        slots = {**topic.slots, **topic.eval_slots}
        for entry in topic.eval_q:
            template, issue_override = unpack(entry)
            values = pick_values(slots, rng)
            core = fill(template, values)
            cores.add(core.lower())
            rows.append(row(style_question(core, rng), build_answer(topic, values, issue_override, rng, refs.next())))
    rng.shuffle(rows)
    return rows, cores


def check_rows(rows: list[dict], label: str) -> None:
    for i, r in enumerate(rows):
        msgs = r["messages"]
        assert [m["role"] for m in msgs] == ["user", "assistant"], (label, i)
        question, answer = msgs[0]["content"], msgs[1]["content"]
        assert question.strip() == question and question, (label, i, question)
        assert "{" not in question and "{" not in answer, (label, i, "unfilled placeholder")
        assert ANSWER_RE.match(answer), (label, i, answer)
        numbers = [line.split(".", 1)[0] for line in answer.splitlines() if re.match(r"\d\. ", line)]
        assert numbers == [str(k) for k in range(1, len(numbers) + 1)], (label, i, numbers)
        n_words = len(answer.split())
        assert MIN_WORDS <= n_words <= MAX_WORDS, (label, i, n_words)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    assets = Path(__file__).resolve().parents[2] / "src" / "tunesmith" / "assets"
    parser.add_argument("--out-dir", type=Path, default=assets)
    args = parser.parse_args()

    rng = random.Random(SEED)
    refs = RefNumbers(rng)
    train, train_cores = make_train(rng, refs)
    evals, eval_cores = make_eval(rng, refs)

    check_rows(train, "train")
    check_rows(evals, "eval")
    assert len(train) == N_TRAIN, len(train)
    assert len(evals) == N_EVAL, len(evals)
    train_qs = {r["messages"][0]["content"] for r in train}
    eval_qs = [r["messages"][0]["content"] for r in evals]
    assert len(train_qs) == len(train), "duplicate train questions"
    assert len(set(eval_qs)) == len(eval_qs), "duplicate eval questions"
    assert not train_qs & set(eval_qs), "eval question found in train (exact)"
    train_lower = {q.lower() for q in train_qs}
    assert not train_lower & {q.lower() for q in eval_qs}, "eval question found in train (case-insensitive)"
    assert not train_cores & eval_cores, "eval question template reused in train"

    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(args.out_dir / "support_train.jsonl", train)
    write_jsonl(args.out_dir / "support_eval.jsonl", evals)
    words = [len(r["messages"][1]["content"].split()) for r in train + evals]
    print(
        f"wrote {len(train)} train and {len(evals)} eval rows to {args.out_dir} "
        f"(answer words min {min(words)}, mean {sum(words) / len(words):.1f}, max {max(words)})"
    )


if __name__ == "__main__":
    main()
